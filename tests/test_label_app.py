"""The labeling app through Flask's test client: tokens, CSRF, escaping, swaps, progress, restart."""

from __future__ import annotations

import re

import pytest

from cloudft.errors import CloudftError
from cloudft.label.app import create_app
from cloudft.label.pairs import load_pairs
from cloudft.label.store import Store, plan_assignments, unswap
from label_fixtures import XSS_A, XSS_B, make_pairs


@pytest.fixture()
def setup(tmp_path):
    pairs = load_pairs(make_pairs(tmp_path / "pairs.jsonl", n=6, xss=True))
    store = Store.open_or_create(tmp_path / "db.sqlite", pairs, ["ann", "bob"], overlap=2, seed=3)
    app = create_app(store, "# Guide\n\nBe <b>careful</b>.\n\n[x](javascript:alert(1))")
    tokens = {a["name"]: a["token"] for a in store.annotators()}
    return store, app.test_client(), tokens


def _form(html: str) -> dict:
    return {k: re.search(rf'name="{k}" value="([^"]*)"', html).group(1) for k in ("pair_id", "csrf")}


def test_unknown_token_shows_and_accepts_nothing(setup):
    store, client, tokens = setup
    for path in ("/a/nope/", "/a/nope/item", "/a/nope/next.json", "/"):
        r = client.get(path)
        assert r.status_code == 404 and b"Response" not in r.data
    r = client.post("/a/nope/label", data={"pair_id": "p-000", "choice": "A"})
    assert r.status_code == 404
    assert store.labels() == []


def test_guidelines_rendered_with_html_escaped(setup):
    _, client, tokens = setup
    r = client.get(f"/a/{tokens['ann']}/")
    body = r.get_data(as_text=True)
    assert "<h1>Guide</h1>" in body and "&lt;b&gt;careful&lt;/b&gt;" in body
    assert 'href="javascript:' not in body
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["Referrer-Policy"] == "no-referrer"


def test_label_flow_unswaps_and_counts_progress(setup):
    store, client, tokens = setup
    tok = tokens["ann"]
    seen = []
    for _ in range(6):
        page = client.get(f"/a/{tok}/item").get_data(as_text=True)
        form = _form(page)
        shown_a = re.search(r'id="response-a" class="response">([^<]*)</pre>', page).group(1)
        seen.append(form["pair_id"])
        r = client.post(f"/a/{tok}/label", data={**form, "choice": "A", "rationale": " because "})
        assert r.status_code == 303
        lab = [x for x in store.labels() if x["pair_id"] == form["pair_id"]][0]
        item = store.items()[form["pair_id"]]
        # the response shown first is the one recorded as winner, in the original orientation
        import html
        assert item["response_" + lab["choice"]] == html.unescape(shown_a)
        assert lab["shown"] == "A" and lab["rationale"] == "because"
        assert lab["choice"] == ("b" if lab["swapped"] else "a")
    assert sorted(seen) == sorted(store.items())
    assert "All done" in client.get(f"/a/{tok}/item").get_data(as_text=True)
    assert store.progress("ann") == (6, 6) and store.progress("bob") == (0, 6)


def test_model_text_is_escaped(setup):
    store, client, tokens = setup
    tok = tokens["bob"]
    while True:  # walk to the hostile item
        page = client.get(f"/a/{tok}/item").get_data(as_text=True)
        form = _form(page)
        if form["pair_id"] == "p-000":
            break
        client.post(f"/a/{tok}/label", data={**form, "choice": "skip"})
    assert "<script>window.__xss" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;Hello &amp; &#34;bye&#34;" in page
    assert "&lt;img src=x onerror=&#34;window.__xss = 2&#34;&gt;second answer&lt;/textarea&gt;" in page


def test_csrf_and_bad_fields_are_refused(setup):
    store, client, tokens = setup
    tok = tokens["ann"]
    form = _form(client.get(f"/a/{tok}/item").get_data(as_text=True))
    assert client.post(f"/a/{tok}/label", data={**form, "csrf": "0" * 64, "choice": "A"}).status_code == 403
    assert client.post(f"/a/{tok}/label", data={"pair_id": form["pair_id"], "choice": "A"}).status_code == 403
    # another annotator's form token does not work for this annotator
    other = _form(client.get(f"/a/{tokens['bob']}/item").get_data(as_text=True))
    assert client.post(f"/a/{tok}/label", data={**other, "choice": "A"}).status_code == 403
    r = client.post(f"/a/{tok}/label", data={**form, "choice": "A"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and b"cross-site" in r.data
    r = client.post(f"/a/{tok}/label", data={**form, "choice": "C"})
    assert r.status_code == 400 and b"choice must be one of A, B, tie, skip" in r.data
    r = client.post(f"/a/{tok}/label", data={**form, "choice": "A", "rationale": "x" * 5001},
                    headers={"Accept": "application/json"})
    assert r.status_code == 400 and "limit is 5000" in r.get_json()["error"]
    assert store.labels() == []
    r = client.post(f"/a/{tok}/label", data={**form, "choice": "tie"}, headers={"Accept": "application/json"})
    assert r.get_json() == {"ok": True, "pair_id": form["pair_id"], "choice": "tie"}


def test_assignments_balanced_with_overlap_and_swaps():
    ids = [f"p{i}" for i in range(30)]
    rows = plan_assignments(ids, ["a", "b", "c", "d", "e"], 3, seed=1)
    per_item = {}
    for name, pid, _, _ in rows:
        per_item.setdefault(pid, set()).add(name)
    assert all(len(v) == 3 for v in per_item.values()) and len(per_item) == 30
    counts = {n: sum(r[0] == n for r in rows) for n in "abcde"}
    assert set(counts.values()) == {18}
    assert 0.3 < sum(r[3] for r in rows) / len(rows) < 0.7
    with pytest.raises(CloudftError, match="overlap 4 needs between 1 and 3"):
        plan_assignments(ids, ["a", "b", "c"], 4, seed=0)
    assert unswap("A", True) == "b" and unswap("B", True) == "a" and unswap("A", False) == "a"


def test_reopen_keeps_tokens_and_refuses_other_pairs(tmp_path, setup):
    store, _, tokens = setup
    pairs = load_pairs(make_pairs(tmp_path / "pairs.jsonl", n=6, xss=True))
    again = Store.open_or_create(store.path, pairs, ["ann", "bob"], overlap=2, seed=3)
    assert {a["name"]: a["token"] for a in again.annotators()} == tokens
    with pytest.raises(CloudftError, match="different pairs"):
        Store.open_or_create(store.path, pairs[:3], ["ann", "bob"], overlap=2)
    with pytest.raises(CloudftError, match="created with annotators ann, bob"):
        Store.open_or_create(store.path, pairs, ["ann", "bob", "cy"], overlap=2)
