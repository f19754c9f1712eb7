"""The real server process: per-annotator URLs on start, and no acknowledged label lost to SIGKILL."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.parse
import urllib.request

from cloudft.label.store import Store
from label_fixtures import make_pairs, start_server, stop_server


def _get(url: str) -> dict:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, data: dict) -> dict:
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(),
                                 headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_sigkill_loses_no_acknowledged_label_and_links_survive_restart(tmp_path):
    pairs = make_pairs(tmp_path / "pairs.jsonl", n=8)
    db = tmp_path / "labels.sqlite"
    proc, urls = start_server(pairs, db, annotators="alice,bob", overlap=2)
    acked = {}
    try:
        assert set(urls) == {"alice", "bob"}
        assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/a/[A-Za-z0-9_-]{20,}/", u) for u in urls.values())
        for name, url in urls.items():
            for choice in ("A", "B", "tie"):
                item = _get(url + "next.json")["item"]
                ack = _post(url + "label", {"pair_id": item["pair_id"], "csrf": item["csrf"], "choice": choice})
                assert ack["ok"]
                acked[(name, item["pair_id"])] = choice
    finally:
        stop_server(proc, signal.SIGKILL)
    proc, urls2 = start_server(pairs, db, annotators="alice,bob", overlap=2)
    try:
        assert urls2.keys() == urls.keys()
        for name in urls:  # same private links after a restart (only the port may change)
            assert urls2[name].split("/a/")[1] == urls[name].split("/a/")[1]
        nxt = _get(urls2["alice"] + "next.json")
        assert nxt["done"] == 3 and nxt["total"] == 8
    finally:
        stop_server(proc)
    got = {(lab["annotator"], lab["pair_id"]): lab["shown"] for lab in Store.open(db).labels()}
    assert got == acked
