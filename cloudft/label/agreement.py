"""Consolidation and inter-annotator agreement, shared by the web app and Ground Truth.

Labels are in the pair's original orientation: "a", "b", "tie", or "skip". **Skip is missing data**, never a
category. Every metric is reported twice: with "tie" as a category, and with ties treated as missing.

Tie policy (majority vote): an item's winner is the label held by a strict majority (> 50 %) of its non-skip
votes, and at least `min_votes` non-skip votes are needed. A "tie" majority, a split vote, or too few votes give
no winner: the item is left out of the DPO export and listed in the quarantine file with its reason.

Statistics come from maintained packages: Cohen's and Fleiss' kappa from statsmodels, Krippendorff's alpha from
`krippendorff`, the position-bias binomial test from scipy.
"""

from __future__ import annotations

import itertools
import math
import statistics
import warnings
from collections import Counter, defaultdict
from typing import Any, Iterable, Optional, Sequence

WITH_TIES = ("a", "b", "tie")
WITHOUT_TIES = ("a", "b")


def majority(votes: Iterable[str], min_votes: int = 1, min_agreement: float = 0.5) -> tuple[Optional[str], str]:
    """(winner, reason). winner is "a"/"b" or None; reason is "majority", "tie", "no majority",
    "too few votes" or "low agreement"."""
    counts = Counter(v for v in votes if v != "skip")
    n = sum(counts.values())
    if n == 0 or n < min_votes:
        return None, "too few votes"
    label, top = counts.most_common(1)[0]
    if top * 2 <= n:
        return None, "no majority"
    if label == "tie":
        return None, "tie"
    if top / n < min_agreement:
        return None, "low agreement"
    return label, "majority"


def _ratings(labels: Sequence[dict], cats: Sequence[str]) -> dict[str, dict[str, str]]:
    """pair_id -> {annotator: label} keeping only labels in `cats` (others are missing)."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for lab in labels:
        if lab["choice"] in cats:
            out[lab["pair_id"]][lab["annotator"]] = lab["choice"]
    return out


def percent_agreement(ratings: dict[str, dict[str, str]]) -> Optional[float]:
    """Per item: the share of agreeing rater pairs; averaged over items with at least two ratings."""
    per_item = []
    for by in ratings.values():
        vals = list(by.values())
        if len(vals) < 2:
            continue
        pairs = list(itertools.combinations(vals, 2))
        per_item.append(sum(x == y for x, y in pairs) / len(pairs))
    return sum(per_item) / len(per_item) if per_item else None


def cohen_kappa(x: Sequence[str], y: Sequence[str], cats: Sequence[str]) -> Optional[float]:
    """Cohen's kappa of two raters over the same items (statsmodels); None when undefined."""
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa

    idx = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for a, b in zip(x, y):
        table[idx[a], idx[b]] += 1
    if table.sum() < 2:
        return None
    with warnings.catch_warnings():  # statsmodels also computes a z-value that may divide by zero
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(cohens_kappa(table).kappa)
    return None if math.isnan(value) else value


def pairwise_cohen(ratings: dict[str, dict[str, str]], cats: Sequence[str],
                   min_shared: int = 2) -> dict[str, Any]:
    """Cohen's kappa for every annotator pair with `min_shared` common items, and their mean."""
    names = sorted({n for by in ratings.values() for n in by})
    pairs = {}
    for a, b in itertools.combinations(names, 2):
        shared = [by for by in ratings.values() if a in by and b in by]
        if len(shared) < min_shared:
            continue
        k = cohen_kappa([by[a] for by in shared], [by[b] for by in shared], cats)
        if k is not None:
            pairs[f"{a}|{b}"] = {"kappa": k, "items": len(shared)}
    mean = sum(p["kappa"] for p in pairs.values()) / len(pairs) if pairs else None
    return {"mean": mean, "pairs": pairs}


def fleiss(ratings: dict[str, dict[str, str]], cats: Sequence[str]) -> dict[str, Any]:
    """Fleiss' kappa over the items that have the most common number (≥ 2) of ratings (statsmodels)."""
    import numpy as np
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    sizes = Counter(len(by) for by in ratings.values() if len(by) >= 2)
    if not sizes:
        return {"kappa": None, "items": 0, "raters_per_item": None}
    k = max(sizes, key=lambda s: (sizes[s], s))
    idx = {c: i for i, c in enumerate(cats)}
    rows = [[idx[v] for v in by.values()] for by in ratings.values() if len(by) == k]
    table, _ = aggregate_raters(np.array(rows), n_cat=len(cats))
    value = float(fleiss_kappa(table, method="fleiss")) if len(rows) >= 2 else float("nan")
    return {"kappa": None if math.isnan(value) else value, "items": len(rows), "raters_per_item": k}


def krippendorff_alpha(ratings: dict[str, dict[str, str]], cats: Sequence[str]) -> Optional[float]:
    """Nominal Krippendorff's alpha, any number of raters, missing ratings allowed (`krippendorff`)."""
    import krippendorff
    import numpy as np

    names = sorted({n for by in ratings.values() for n in by})
    items = [by for by in ratings.values() if len(by) >= 2]
    if len(names) < 2 or not items:
        return None
    idx = {c: float(i) for i, c in enumerate(cats)}
    data = np.full((len(names), len(items)), np.nan)
    for j, by in enumerate(items):
        for i, name in enumerate(names):
            if name in by:
                data[i, j] = idx[by[name]]
    if len(set(data[~np.isnan(data)].tolist())) < 2:
        return None  # one value only: alpha is undefined
    value = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return None if math.isnan(value) else value


def _metrics(labels: Sequence[dict], cats: Sequence[str]) -> dict[str, Any]:
    ratings = _ratings(labels, cats)
    cohen = pairwise_cohen(ratings, cats)
    fl = fleiss(ratings, cats)
    return {"percent_agreement": percent_agreement(ratings), "cohen_kappa": cohen["mean"],
            "cohen_pairs": cohen["pairs"], "fleiss_kappa": fl["kappa"], "fleiss_items": fl["items"],
            "fleiss_raters_per_item": fl["raters_per_item"], "krippendorff_alpha": krippendorff_alpha(ratings, cats)}


def _ordered(lab: dict) -> bool:
    """Whether the label knows which response was shown first (not so for an import without the order)."""
    from .store import UNORDERED_SOURCE

    return lab.get("source") != UNORDERED_SOURCE


def position_bias(labels: Sequence[dict]) -> dict[str, Any]:
    """How often the response shown first (A on screen) wins among decisive votes, with a two-sided
    binomial test against 0.5 (scipy). Labels imported without their display order are left out."""
    decisive = [lab for lab in labels if lab["shown"] in ("A", "B") and _ordered(lab)]
    first = sum(lab["shown"] == "A" for lab in decisive)
    out: dict[str, Any] = {"decisive": len(decisive), "shown_first_wins": first,
                           "rate": first / len(decisive) if decisive else None, "p_value": None,
                           "order_unknown": sum(not _ordered(lab) for lab in labels)}
    if decisive:
        from scipy.stats import binomtest

        out["p_value"] = float(binomtest(first, len(decisive), 0.5).pvalue)
    return out


def consolidate(labels: Sequence[dict], min_votes: int = 1, min_agreement: float = 0.5) -> dict[str, dict]:
    """pair_id -> {votes, n, winner, reason, annotators, modal_share}."""
    by_item: dict[str, list[dict]] = defaultdict(list)
    for lab in labels:
        by_item[lab["pair_id"]].append(lab)
    out = {}
    for pid, labs in by_item.items():
        votes = Counter({c: 0 for c in ("a", "b", "tie", "skip")})
        votes.update(lab["choice"] for lab in labs)
        winner, reason = majority([lab["choice"] for lab in labs], min_votes, min_agreement)
        decided = sum(v for c, v in votes.items() if c != "skip")
        modal = max((v for c, v in votes.items() if c != "skip"), default=0)
        out[pid] = {"votes": dict(votes), "n": len(labs), "winner": winner, "reason": reason,
                    "modal_share": modal / decided if decided else None,
                    "annotators": sorted(lab["annotator"] for lab in labs)}
    return out


def per_annotator(labels: Sequence[dict], consolidated: dict[str, dict]) -> dict[str, dict]:
    """Per annotator: count, skip/tie rates, agreement with the item majority, median seconds, and the share of
    decisive votes that went to the response shown first (position bias)."""
    by: dict[str, list[dict]] = defaultdict(list)
    for lab in labels:
        by[lab["annotator"]].append(lab)
    out = {}
    for name, labs in sorted(by.items()):
        judged = [lab for lab in labs if lab["choice"] != "skip"]
        with_majority = []
        for lab in judged:
            c = consolidated[lab["pair_id"]]
            ref = c["winner"] or ("tie" if c["reason"] == "tie" else None)
            if ref is not None:
                with_majority.append(lab["choice"] == ref)
        decisive = [lab for lab in labs if lab["shown"] in ("A", "B") and _ordered(lab)]
        secs = [lab["seconds"] for lab in labs if lab.get("seconds") is not None]
        out[name] = {
            "labels": len(labs),
            "skip_rate": (len(labs) - len(judged)) / len(labs),
            "tie_rate": sum(lab["choice"] == "tie" for lab in labs) / len(labs),
            "agreement_with_majority": sum(with_majority) / len(with_majority) if with_majority else None,
            "median_seconds": statistics.median(secs) if secs else None,
            "shown_first_rate": (sum(lab["shown"] == "A" for lab in decisive) / len(decisive)) if decisive else None,
        }
    return out


def agreement_report(labels: Sequence[dict], min_votes: int = 1, min_agreement: float = 0.5,
                     review_below: float = 0.6) -> dict[str, Any]:
    """Everything `cloudft label report` prints: metrics with and without ties, position bias, per-annotator
    figures, consolidated items and the items to review (no majority, or modal share below `review_below`)."""
    consolidated = consolidate(labels, min_votes, min_agreement)
    n = len(labels)
    review = [{"pair_id": pid, "reason": c["reason"] if c["winner"] is None and c["reason"] != "tie"
               else "low agreement", "votes": c["votes"]}
              for pid, c in consolidated.items()
              if (c["winner"] is None and c["reason"] != "tie")
              or (c["modal_share"] is not None and c["modal_share"] < review_below)]
    return {
        "labels": n,
        "items": len(consolidated),
        "annotators": len({lab["annotator"] for lab in labels}),
        "skip_rate": sum(lab["choice"] == "skip" for lab in labels) / n if n else None,
        "tie_rate": sum(lab["choice"] == "tie" for lab in labels) / n if n else None,
        "with_ties": _metrics(labels, WITH_TIES),
        "without_ties": _metrics(labels, WITHOUT_TIES),
        "position_bias": position_bias(labels),
        "per_annotator": per_annotator(labels, consolidated),
        "policy": {"min_votes": min_votes, "min_agreement": min_agreement, "review_below": review_below,
                   "rule": "strict majority of non-skip votes; tie majority or split vote → no winner"},
        "outcomes": dict(Counter(c["reason"] for c in consolidated.values())),
        "review": review,
        "consolidated": consolidated,
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def render_report(rep: dict[str, Any], max_review: int = 20) -> str:
    """The report as Markdown (printed by the CLI and written beside the dataset as agreement.md)."""
    lines = ["# Labeling agreement report", "",
             f"{rep['labels']} labels on {rep['items']} items from {rep['annotators']} annotators; "
             f"skip rate {_fmt(rep['skip_rate'])}, tie rate {_fmt(rep['tie_rate'])}.", "",
             "| metric | with ties | ties excluded |", "|---|---|---|"]
    for key, name in (("percent_agreement", "percent agreement"), ("cohen_kappa", "Cohen's kappa (mean of pairs)"),
                      ("fleiss_kappa", "Fleiss' kappa"), ("krippendorff_alpha", "Krippendorff's alpha (nominal)")):
        lines.append(f"| {name} | {_fmt(rep['with_ties'][key])} | {_fmt(rep['without_ties'][key])} |")
    pb = rep["position_bias"]
    unknown = f" ({pb['order_unknown']} imported labels without their display order left out)" \
        if pb.get("order_unknown") else ""
    lines += ["", f"Position bias: the response shown first won {_fmt(pb['rate'])} of {pb['decisive']} decisive "
              f"votes (binomial p = {_fmt(pb['p_value'])}){unknown}.", "",
              f"Outcomes ({rep['policy']['rule']}): "
              + ", ".join(f"{k}: {v}" for k, v in sorted(rep["outcomes"].items())), "",
              "| annotator | labels | agreement with majority | shown-first rate | tie rate | skip rate | median s |",
              "|---|---|---|---|---|---|---|"]
    for name, a in rep["per_annotator"].items():
        lines.append(f"| {name} | {a['labels']} | {_fmt(a['agreement_with_majority'])} | "
                     f"{_fmt(a['shown_first_rate'])} | {_fmt(a['tie_rate'])} | {_fmt(a['skip_rate'])} | "
                     f"{_fmt(a['median_seconds'])} |")
    lines += ["", f"Items to review ({len(rep['review'])}):"]
    for r in rep["review"][:max_review]:
        v = r["votes"]
        lines.append(f"- {r['pair_id']}: {r['reason']} (a {v['a']}, b {v['b']}, tie {v['tie']}, skip {v['skip']})")
    if len(rep["review"]) > max_review:
        lines.append(f"- … and {len(rep['review']) - max_review} more (see agreement.json)")
    return "\n".join(lines) + "\n"
