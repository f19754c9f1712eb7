"""Labels (issue 15, item 12): import of multi-annotator labels with tie codes (agreement checked against an
independent computation), export that quarantines unusable pairs and writes atomically, multi-turn prompt files,
relabel history, hostile pairs/prompts files, the app's request-size limit, and a private label store."""

from __future__ import annotations

import csv
import itertools
import json
import os
import stat
from collections import Counter

import pytest
from click.testing import CliRunner

from cloudft.cli.label import label_group
from cloudft.errors import CloudftError
from cloudft.label import export as export_mod
from cloudft.label.app import MAX_REQUEST_BYTES, create_app
from cloudft.label.candidates import load_prompts
from cloudft.label.pairs import load_pairs
from cloudft.label.store import Store
from label_fixtures import make_pairs

# Chatbot Arena / MT-Bench style judgments: winner model_a / model_b / tie / tie (bothbad), three judges per pair
VOTES = {"q1": ("model_a", "model_a", "model_a"), "q2": ("model_a", "model_b", "tie"),
         "q3": ("model_b", "model_b", "tie (bothbad)"), "q4": ("tie", "tie", "model_a"),
         "q5": ("model_b", "model_b", "model_b"), "q6": ("model_a", "model_a", "model_b"),
         "q7": ("model_a", "skip", "model_b"), "q8": ("tie (bothbad)", "tie", "model_b")}
CODE = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "tie", "skip": None}


def _write_judgments(path, extra=None):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["question_id", "judge", "winner", "prompt", "response_a", "response_b"])
        for q, votes in VOTES.items():
            for judge, v in zip(("expert_1", "expert_2", "expert_3"), votes):
                w.writerow([q, judge, v, f"Question {q}?", f"Answer A to {q}.", f"Answer B to {q}."])
        for row in extra or []:
            w.writerow(row)
    return path


def _independent(cats):
    """Percent agreement, Fleiss' kappa (items with 3 ratings) and nominal Krippendorff's alpha, from their
    textbook definitions, over VOTES (skips are missing; without ties, ties are missing too)."""
    units = {q: [CODE[v] for v in votes if CODE[v] in cats] for q, votes in VOTES.items()}
    units = {q: vs for q, vs in units.items() if len(vs) >= 2}
    per_item = [sum(x == y for x, y in itertools.combinations(vs, 2)) / (len(vs) * (len(vs) - 1) / 2)
                for vs in units.values()]
    percent = sum(per_item) / len(per_item)
    full = [vs for vs in units.values() if len(vs) == 3]
    n = 3
    p_i = [(sum(c * c for c in Counter(vs).values()) - n) / (n * (n - 1)) for vs in full]
    p_j = [sum(vs.count(c) for vs in full) / (len(full) * n) for c in cats]
    pe = sum(p * p for p in p_j)
    fleiss = (sum(p_i) / len(p_i) - pe) / (1 - pe)
    o = Counter()
    for vs in units.values():
        for i, j in itertools.permutations(range(len(vs)), 2):
            o[(vs[i], vs[j])] += 1 / (len(vs) - 1)
    n_c = {c: sum(v for (a, _), v in o.items() if a == c) for c in cats}
    total = sum(n_c.values())
    d_o = sum(v for (a, b), v in o.items() if a != b)
    d_e = sum(n_c[a] * n_c[b] for a in cats for b in cats if a != b) / (total - 1)
    return percent, fleiss, 1 - d_o / d_e


def test_import_multi_annotator_labels_with_tie_codes_and_agreement_matches(tmp_path):
    """Before: labels collected elsewhere could not be brought in at all."""
    db = tmp_path / "imported.sqlite"
    r = CliRunner().invoke(label_group, ["import", str(_write_judgments(tmp_path / "j.csv")), "--db", str(db),
                                         "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert (summary["labels"], summary["pairs"], summary["annotators"]) == (24, 8, 3)
    assert summary["choices"] == {"a": 8, "b": 9, "tie": 6, "skip": 1} and summary["display_order"] == "unknown"
    r = CliRunner().invoke(label_group, ["report", "--db", str(db), "--json", "--out", str(tmp_path / "rep")])
    rep = json.loads(r.output)
    for key, cats in (("with_ties", ("a", "b", "tie")), ("without_ties", ("a", "b"))):
        percent, fleiss, alpha = _independent(cats)
        assert rep[key]["percent_agreement"] == pytest.approx(percent)
        assert rep[key]["fleiss_kappa"] == pytest.approx(fleiss)
        assert rep[key]["krippendorff_alpha"] == pytest.approx(alpha)
    assert rep["outcomes"] == {"majority": 4, "no majority": 2, "tie": 2}  # q1 q3 q5 q6; q2 q7; q4 q8
    # the display order is unknown, so position bias does not pretend to know it
    assert rep["position_bias"]["decisive"] == 0 and rep["position_bias"]["order_unknown"] == 24
    out = tmp_path / "ds"
    assert CliRunner().invoke(label_group, ["export", "--db", str(db), "--out", str(out)]).exit_code == 0
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert {"prompt": "Question q1?", "chosen": "Answer A to q1.", "rejected": "Answer B to q1."} in rows


def test_import_refuses_unknown_codes_and_missing_texts(tmp_path):
    path = _write_judgments(tmp_path / "j.csv", extra=[["q9", "expert_1", "A>>B", "Q?", "a", "b"]])
    with pytest.raises(CloudftError) as err:
        CliRunner().invoke(label_group, ["import", str(path), "--db", str(tmp_path / "x.sqlite")],
                           catch_exceptions=False)
    assert "'A>>B' (1 rows, first at line 26)" in err.value.message and "--a-codes" in err.value.hint
    assert not (tmp_path / "x.sqlite").exists()  # nothing imported
    r = CliRunner().invoke(label_group, ["import", str(path), "--db", str(tmp_path / "y.sqlite"), "--a-codes",
                                         "model_a,A>>B", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["choices"]["a"] == 9
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"pair_id": "p-1", "annotator": "x", "label": "a"}) + "\n")
    with pytest.raises(CloudftError, match="no prompt and responses for 1 pair"):
        CliRunner().invoke(label_group, ["import", str(bare), "--db", str(tmp_path / "z.sqlite")],
                           catch_exceptions=False)


def _store_with(tmp_path, pairs, votes):
    """Two annotators agreeing on `votes` (pair id -> a/b in the pair's own orientation)."""
    store = Store.open_or_create(tmp_path / "db.sqlite", pairs, ["x", "y"], overlap=2, seed=0)
    for pid, v in votes.items():
        for name in ("x", "y"):
            with store.conn() as c:
                swapped = c.execute("SELECT swapped FROM assignments WHERE annotator=? AND pair_id=?",
                                    (name, pid)).fetchone()[0]
            store.record(name, pid, {"a": "B" if swapped else "A", "b": "A" if swapped else "B"}[v])
    return store


def test_export_quarantines_an_empty_response_and_writes_atomically(tmp_path, monkeypatch):
    """Before: a pair with an empty response aborted the export and left a partial train.jsonl."""
    pairs = load_pairs(make_pairs(tmp_path / "pairs.jsonl", n=3))
    pairs[1]["response_a"] = "  "
    store = _store_with(tmp_path, pairs, {"p-000": "a", "p-001": "a", "p-002": "b"})
    out = tmp_path / "ds"
    summary = export_mod.export(store, out)
    q = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert summary["pairs"] == 2 and [(e["pair_id"], e["reason"]) for e in q] == [("p-001",
                                                                                    "response_a: 'chosen' is empty")]
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(export_mod, "write_report", boom)  # fails after the dataset files are written
    with pytest.raises(OSError):
        export_mod.export(store, out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # the old export, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")] == []  # no temp dir left
    monkeypatch.undo()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CloudftError, match="holds other files"):
        export_mod.export(store, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_relabel_keeps_the_history(tmp_path):
    """Before: relabelling overwrote an acknowledged label with no trace."""
    store = Store.open_or_create(tmp_path / "db.sqlite", load_pairs(make_pairs(tmp_path / "p.jsonl", n=2)),
                                 ["x"], overlap=1, seed=0)
    first = store.record("x", "p-000", "A")
    second = store.record("x", "p-000", "tie")
    (hist,) = store.history()
    assert (hist["choice"], hist["created"]) == (first["choice"], first["created"])
    assert hist["replaced"] >= second["created"] - 1e-3
    assert [lab["choice"] for lab in store.labels()] == ["tie"]
    out = tmp_path / "ds"
    store.record("x", "p-001", "A")
    export_mod.export(store, out)
    assert json.loads((out / "label_history.jsonl").read_text())["pair_id"] == "p-000"


def test_label_store_is_private(tmp_path):
    """Before: labels.sqlite (annotator tokens, the form secret) was world-readable."""
    old = os.umask(0o022)
    try:
        store = Store.open_or_create(tmp_path / "db.sqlite", load_pairs(make_pairs(tmp_path / "p.jsonl", n=1)),
                                     ["x"], overlap=1, seed=0)
        store.record("x", "p-000", "A")
    finally:
        os.umask(old)
    for path in tmp_path.glob("db.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    loose = tmp_path / "loose.sqlite"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    Store.open(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_app_refuses_oversized_requests(tmp_path):
    """Before: the app had no request-size limit."""
    store = Store.open_or_create(tmp_path / "db.sqlite", load_pairs(make_pairs(tmp_path / "p.jsonl", n=1)),
                                 ["x"], overlap=1, seed=0)
    client = create_app(store, "# Guide").test_client()
    token = store.annotators()[0]["token"]
    r = client.post(f"/a/{token}/label", data={"pair_id": "p-000", "choice": "A",
                                               "rationale": "x" * (MAX_REQUEST_BYTES + 10)},
                    headers={"Accept": "application/json"})
    assert r.status_code == 413 and r.get_json()["ok"] is False
    assert store.labels() == []


@pytest.mark.parametrize("content,match", [
    (b'{"pair_id": "p", "prompt": "caf\xe9", "response_a": "a", "response_b": "b"}\n', "invalid UTF-8"),
    (b'{"pair_id": "p", "prompt": ' + b"[" * 5000 + b"]" * 5000 + b', "response_a": "a", "response_b": "b"}\n',
     "too deep"),
    (b'{"pair_id": "p", "prompt": [{"role": "user", "content": [[["x"]]]}], "response_a": "a", "response_b": "b"}\n',
     "prompt must be a string or a list"),
])
def test_pairs_and_prompt_loaders_give_located_errors(tmp_path, content, match):
    """Before: invalid UTF-8 or deep JSON crashed the loaders with a traceback."""
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(content)
    with pytest.raises(CloudftError, match=f"pairs.jsonl:1: .*{match}"):
        load_pairs(path)
    if match != "prompt must be a string or a list":
        with pytest.raises(CloudftError, match=f"pairs.jsonl:1: .*{match}"):
            load_prompts(path)


def test_candidates_take_multi_turn_prompt_files(tmp_path, tiny_model):
    """Before: MT-Bench-style `turns: [...]` prompt files were refused."""
    from cloudft.label.candidates import Sampling, generate_pairs

    path = tmp_path / "question.jsonl"
    path.write_text(json.dumps({"question_id": 81, "category": "writing",
                                "turns": ["Compute 2 + 3.", "Now double it."]}) + "\n"
                    + json.dumps({"prompt": "Compute 1 + 1."}) + "\n")
    prompts = load_prompts(path)
    assert prompts[0] == {"id": "81", "turns": ["Compute 2 + 3.", "Now double it."]}
    pairs = list(generate_pairs(prompts, str(tiny_model), None, Sampling(max_new_tokens=4, seed=1)))
    dialog = pairs[0]["prompt"]
    assert [m["role"] for m in dialog] == ["user", "assistant", "user"]
    assert dialog[0]["content"] == "Compute 2 + 3." and dialog[2]["content"] == "Now double it."
    assert pairs[1]["prompt"] == "Compute 1 + 1."
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"turns": ["ok", 5]}) + "\n")
    with pytest.raises(CloudftError, match="'turns' must be a non-empty list"):
        load_prompts(bad)
