"""Shared helpers for the labeling tests: pairs files, a server subprocess, label tables."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

XSS_A = '<script>window.__xss = 1</script>Hello & "bye"'
XSS_B = '<img src=x onerror="window.__xss = 2">second answer</textarea>'


def make_pairs(path: Path, n: int = 6, xss: bool = False, conversational_first: bool = False) -> Path:
    """Write a pairs file of `n` arithmetic pairs (the first one hostile when `xss`)."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            a, b = f" The answer is {i + 10}.", f" The answer is {i + 20}."
            if xss and i == 0:
                a, b = XSS_A, XSS_B
            prompt = [{"role": "user", "content": f"Q{i}?"}] if conversational_first and i == 0 else f"Compute {i} + 10."
            fh.write(json.dumps({"pair_id": f"p-{i:03d}", "prompt": prompt, "response_a": a, "response_b": b,
                                 "model_a": "m1", "model_b": "m2"}) + "\n")
    return path


def start_server(pairs: Path, db: Path, annotators: str = "2", overlap: int = 2, extra: Optional[list] = None,
                 timeout: float = 30) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start `cloudft label serve` on a free port; returns (process, {annotator: url})."""
    cmd = [sys.executable, "-m", "cloudft.cli.main", "label", "serve", str(pairs), "--db", str(db),
           "--annotators", annotators, "--overlap", str(overlap), "--port", "0", *(extra or [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    urls: dict[str, str] = {}
    n = len(annotators.split(",")) if not annotators.isdigit() else int(annotators)
    deadline = time.time() + timeout
    while len(urls) < n:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None or time.time() > deadline:
                err = proc.stderr.read() if proc.poll() is not None else ""
                stop_server(proc)
                raise RuntimeError(f"server did not start: {err}")
            continue
        m = re.match(r"(\S+)\t(http://\S+)", line.strip())
        if m:
            urls[m.group(1)] = m.group(2)
    return proc, urls


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a server started by start_server (only that process)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def labels_from_table(rows: list[tuple[str, str, str]], swapped: Optional[set] = None) -> list[dict]:
    """(annotator, pair_id, choice) rows → label dicts; shown = A for choice a unless (annotator, pair_id) is in `swapped`."""
    out = []
    for name, pid, choice in rows:
        shown = {"a": "A", "b": "B"}.get(choice, choice)
        if swapped and (name, pid) in swapped and choice in ("a", "b"):
            shown = "B" if shown == "A" else "A"
        out.append({"annotator": name, "pair_id": pid, "choice": choice, "shown": shown, "seconds": 1.0})
    return out
