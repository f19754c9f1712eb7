"""Agreement figures against hand-computed values and the packages' published examples; tie policy."""

from __future__ import annotations

import random

import pytest

from cloudft.label.agreement import (agreement_report, cohen_kappa, fleiss, krippendorff_alpha, majority,
                                     render_report)
from label_fixtures import labels_from_table

TWO = [("x", "p1", "a"), ("x", "p2", "a"), ("x", "p3", "b"), ("x", "p4", "tie"),
       ("y", "p1", "a"), ("y", "p2", "b"), ("y", "p3", "b"), ("y", "p4", "tie")]

THREE = {"p1": "aaa", "p2": "aab", "p3": "bbT", "p4": "abT"}


def _three() -> list[dict]:
    rows = []
    for pid, votes in THREE.items():
        for rater, v in zip(("r1", "r2", "r3"), votes):
            rows.append((rater, pid, {"T": "tie"}.get(v, v)))
    return labels_from_table(rows)


def test_two_annotators_hand_computed():
    rep = agreement_report(labels_from_table(TWO))
    # with ties: po = 3/4, pe = (2*1 + 1*2 + 1*1)/16 = 5/16 → kappa = (12/16 - 5/16)/(11/16) = 7/11
    assert rep["with_ties"]["percent_agreement"] == pytest.approx(0.75)
    assert rep["with_ties"]["cohen_kappa"] == pytest.approx(7 / 11)
    # ties excluded: p1..p3, po = 2/3, pe = 4/9 → kappa = (2/9)/(5/9) = 0.4
    assert rep["without_ties"]["percent_agreement"] == pytest.approx(2 / 3)
    assert rep["without_ties"]["cohen_kappa"] == pytest.approx(0.4)
    assert rep["tie_rate"] == pytest.approx(0.25)


def test_three_annotators_hand_computed():
    rep = agreement_report(_three())
    w = rep["with_ties"]
    # per-item agreeing pairs: 1, 1/3, 1/3, 0 → 5/12; Fleiss: Pbar = 5/12, Pe = 14/36 → kappa = 1/22
    assert w["percent_agreement"] == pytest.approx(5 / 12)
    assert w["fleiss_kappa"] == pytest.approx(1 / 22)
    assert w["fleiss_items"] == 4 and w["fleiss_raters_per_item"] == 3
    # Krippendorff (coincidences): Do = 7/12, De = 88/132 → alpha = 1 - 7/8
    assert w["krippendorff_alpha"] == pytest.approx(0.125)
    c = rep["consolidated"]
    assert (c["p1"]["winner"], c["p2"]["winner"], c["p3"]["winner"], c["p4"]["winner"]) == ("a", "a", "b", None)
    assert c["p4"]["reason"] == "no majority"
    assert [r["pair_id"] for r in rep["review"]] == ["p4"]
    # r3 voted a, b, tie, tie vs majorities a, a, b, (none): 1 of 3 comparable items
    assert rep["per_annotator"]["r3"]["agreement_with_majority"] == pytest.approx(1 / 3)
    assert rep["per_annotator"]["r1"]["agreement_with_majority"] == pytest.approx(1.0)
    text = render_report(rep)
    assert "Fleiss' kappa | 0.045" in text and "p4: no majority" in text


def test_fleiss_wikipedia_example():
    """Fleiss (1971) as on Wikipedia / in statsmodels' tests: 10 subjects, 14 raters, 5 categories → 0.210."""
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    cats = ("1", "2", "3", "4", "5")
    ratings = {}
    for s, row in enumerate(table):
        votes = [c for c, n in zip(cats, row) for _ in range(n)]
        ratings[f"s{s}"] = {f"r{i}": v for i, v in enumerate(votes)}
    assert fleiss(ratings, cats)["kappa"] == pytest.approx(0.2099, abs=1e-4)


def test_krippendorff_package_example_with_missing():
    """The `krippendorff` package's README example (Krippendorff 2011): nominal alpha 0.691, missing allowed."""
    data = ["*    *    *    *    *    3    4    1    2    1    1    3    3    *    3",
            "1    *    2    1    3    3    4    3    *    *    *    *    *    *    *",
            "*    *    2    1    3    4    4    *    2    1    1    3    3    *    4"]
    ratings: dict[str, dict[str, str]] = {}
    for coder, row in zip("ABC", data):
        for unit, v in enumerate(row.split()):
            if v != "*":
                ratings.setdefault(f"u{unit}", {})[coder] = v
    assert krippendorff_alpha(ratings, ("1", "2", "3", "4")) == pytest.approx(0.691, abs=1e-3)


def test_cohen_matches_an_independent_implementation():
    from sklearn.metrics import cohen_kappa_score

    rng = random.Random(4)
    x = [rng.choice("ab") for _ in range(50)]
    y = [v if rng.random() < 0.7 else rng.choice("ab") for v in x]
    assert cohen_kappa(x, y, ("a", "b")) == pytest.approx(cohen_kappa_score(x, y))


@pytest.mark.parametrize("votes,expected", [
    (["a", "a", "b"], ("a", "majority")),
    (["a", "b"], (None, "no majority")),
    (["a", "b", "tie"], (None, "no majority")),
    (["tie", "tie", "a"], (None, "tie")),
    (["a", "skip", "skip"], ("a", "majority")),
    (["skip", "skip"], (None, "too few votes")),
    (["b", "b", "a", "skip"], ("b", "majority")),
])
def test_majority_tie_policy(votes, expected):
    assert majority(votes) == expected


def test_majority_thresholds():
    assert majority(["a", "skip"], min_votes=2) == (None, "too few votes")
    assert majority(["a", "a", "b"], min_agreement=0.75) == (None, "low agreement")


def test_position_bias_counts_shown_first():
    rows = [("x", f"p{i}", "a") for i in range(8)] + [("x", "p8", "b"), ("x", "p9", "tie")]
    swapped = {("x", "p0"), ("x", "p1")}  # shown second yet chosen: they count against position bias
    rep = agreement_report(labels_from_table(rows, swapped=swapped))
    pb = rep["position_bias"]
    assert pb["decisive"] == 9 and pb["shown_first_wins"] == 6
    assert pb["rate"] == pytest.approx(6 / 9)
    assert 0 < pb["p_value"] < 1
    assert rep["per_annotator"]["x"]["shown_first_rate"] == pytest.approx(6 / 9)
