"""Export (DPO + KTO through the data versioning API), report and the pilot mode, through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from click.testing import CliRunner

from cloudft.cli.label import label_group
from cloudft.data.version import dataset_version
from cloudft.label.pairs import load_pairs
from cloudft.label.store import Store
from label_fixtures import make_pairs
from test_label_server import _get, _post


def _store(tmp_path):
    pairs = load_pairs(make_pairs(tmp_path / "pairs.jsonl", n=4, conversational_first=True))
    store = Store.open_or_create(tmp_path / "db.sqlite", pairs, ["x", "y", "z"], overlap=3, seed=0)
    votes = {"p-000": "aab", "p-001": "bbb", "p-002": "ab" + "t", "p-003": "ss" + "a"}
    for pid, vs in votes.items():
        for name, v in zip("xyz", vs):
            swapped = bool(_swapped(store, name, pid))
            shown = {"a": "B" if swapped else "A", "b": "A" if swapped else "B", "t": "tie", "s": "skip"}[v]
            store.record(name, pid, shown)
    return store


def _swapped(store, name, pid):
    with store.conn() as c:
        return c.execute("SELECT swapped FROM assignments WHERE annotator=? AND pair_id=?", (name, pid)).fetchone()[0]


def test_export_dpo_kto_and_sidecars(tmp_path):
    store = _store(tmp_path)
    out = tmp_path / "ds"
    r = CliRunner().invoke(label_group, ["export", "--db", str(store.path), "--out", str(out), "--kto", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    items = store.items()
    expected = [
        {"prompt": items["p-000"]["prompt"], "chosen": [{"role": "assistant", "content": items["p-000"]["response_a"]}],
         "rejected": [{"role": "assistant", "content": items["p-000"]["response_b"]}]},
        {"prompt": items["p-001"]["prompt"], "chosen": items["p-001"]["response_b"],
         "rejected": items["p-001"]["response_a"]},
        {"prompt": items["p-003"]["prompt"], "chosen": items["p-003"]["response_a"],
         "rejected": items["p-003"]["response_b"]},
    ]
    def canon(recs):
        return sorted(json.dumps(r, sort_keys=True) for r in recs)

    assert canon(rows) == canon(expected)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "preference" and manifest["splits"]["train"]["version"] == dataset_version(expected)
    assert manifest["labeling"]["quarantined"] == 1
    q = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert q == [{"pair_id": "p-002", "reason": "no majority", "votes": {"a": 1, "b": 1, "tie": 1, "skip": 0}}]
    kto = [json.loads(x) for x in (out / "kto" / "train.jsonl").read_text().splitlines()]
    assert len(kto) == 6 and sum(r["label"] for r in kto) == 3
    assert (out / "agreement.md").read_text().startswith("# Labeling agreement report")
    assert len((out / "labels.jsonl").read_text().splitlines()) == 12
    # stricter policy: p-003 has one non-skip vote only
    r = CliRunner().invoke(label_group, ["export", "--db", str(store.path), "--out", str(tmp_path / "ds2"),
                                         "--min-votes", "2", "--json"])
    assert json.loads(r.output)["pairs"] == 2


def test_report_cli(tmp_path):
    store = _store(tmp_path)
    r = CliRunner().invoke(label_group, ["report", "--db", str(store.path), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "Krippendorff's alpha (nominal)" in r.output and "p-002: no majority" in r.output
    rep = json.loads((tmp_path / "rep" / "agreement.json").read_text())
    assert rep["labels"] == 12 and rep["outcomes"] == {"majority": 3, "no majority": 1}
    r = CliRunner().invoke(label_group, ["report", "--db", str(tmp_path / "missing.sqlite")])
    assert r.exit_code != 0 and "no label store" in str(r.exception)


def test_pilot_labels_a_sample_then_reports_and_exits(tmp_path):
    pairs = make_pairs(tmp_path / "pairs.jsonl", n=10)
    proc = subprocess.Popen([sys.executable, "-m", "cloudft.cli.main", "label", "pilot", str(pairs), "--annotators",
                             "2", "--size", "3", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        urls = [re.match(r"\S+\t(\S+)", proc.stdout.readline()).group(1) for _ in range(2)]
        for url in urls:
            for _ in range(3):  # every annotator labels every pilot item
                item = _get(url + "next.json")["item"]
                assert _post(url + "label", {"pair_id": item["pair_id"], "csrf": item["csrf"], "choice": "A"})["ok"]
            assert _get(url + "next.json")["item"] is None
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "6 labels on 3 items from 2 annotators" in out and "Cohen's kappa" in out
    assert (tmp_path / "agreement.md").exists() and (tmp_path / "pairs.pilot.sqlite").exists()
