"""Real-browser test: headless Chromium (Debian's chromium + chromedriver, via Selenium) reads the guidelines,
labels with clicks and keyboard shortcuts; the exported dataset holds exactly those labels; XSS stays inert."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from label_fixtures import XSS_A, XSS_B, make_pairs, start_server, stop_server

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                reason="needs Debian's chromium and chromium-driver")


@pytest.fixture()
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def test_label_in_browser_then_export(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    pairs = make_pairs(tmp_path / "pairs.jsonl", n=5, xss=True)
    db = tmp_path / "labels.sqlite"
    proc, urls = start_server(pairs, db, annotators="1", overlap=1)
    d = browser
    chosen_text: dict[str, tuple[str, str]] = {}  # pair_id -> (chosen text, rejected text) as displayed
    quarantined: set[str] = set()
    try:
        d.get(urls["annotator-1"])
        assert "Labeling guidelines" in d.find_element(By.CSS_SELECTOR, "#guidelines h1").text
        assert "0 / 5 labelled" in d.find_element(By.ID, "progress").text
        d.find_element(By.ID, "start").click()
        # how each item gets labelled: clicks and keyboard shortcuts
        actions = ["click-A", "key-2", "key-t", "click-B", "key-s"]
        for step, action in enumerate(actions):
            assert f"{step} / 5 labelled" in d.find_element(By.ID, "progress").text
            pid = d.find_element(By.NAME, "pair_id").get_attribute("value")
            a_text = d.find_element(By.ID, "response-a").text
            b_text = d.find_element(By.ID, "response-b").text
            if pid == "p-000":  # the hostile pair: shown as text, nothing executed or injected
                assert {a_text, b_text} == {XSS_A, XSS_B}
                assert d.execute_script("return window.__xss === undefined")
                assert not d.find_elements(By.CSS_SELECTOR, "main img, main script")
            kind, choice = action.split("-")
            form = d.find_element(By.ID, "label-form")
            if kind == "click":
                d.find_element(By.ID, f"choose-{choice}").click()
            else:
                rationale = d.find_element(By.ID, "rationale")
                rationale.send_keys("tb2 typed here")  # shortcut keys inside the box are just text
                d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
                d.execute_script("document.activeElement.blur()")
                d.find_element(By.TAG_NAME, "body").send_keys(choice)
            if choice in ("A", "2", "B"):
                first = choice in ("A",)
                chosen_text[pid] = (a_text, b_text) if first else (b_text, a_text)
            else:
                quarantined.add(pid)
            WebDriverWait(d, 15).until(EC.staleness_of(form))  # the 303 loaded the next page
        assert "All done" in d.find_element(By.ID, "done").text
        assert d.execute_script("return window.__xss === undefined")
    finally:
        stop_server(proc)
    out = tmp_path / "dataset"
    r = subprocess.run([sys.executable, "-m", "cloudft.cli.main", "label", "export", "--db", str(db), "--out",
                        str(out), "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    prov = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    got = {p["pair_id"]: (row["chosen"], row["rejected"]) for p, row in zip(prov, rows)}
    assert got == chosen_text and len(got) == 3
    q = {json.loads(line)["pair_id"] for line in (out / "quarantine.jsonl").read_text().splitlines()}
    assert q == quarantined
    labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert sum(lab["rationale"] == "tb2 typed here" for lab in labels) == 3
