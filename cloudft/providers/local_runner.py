"""Supervisor for one local run: runs each stage's train_entry in order and records status.

Started by LocalProvider.submit in its own process group, so it outlives the CLI (`--detach`) and
`cloudft stop` can signal the whole group. On SIGTERM it forwards the signal to the running stage,
which checkpoints and exits (exit code 143 → status `stopped`).

    python -m cloudft.providers.local_runner RUN_DIR RUN_ID
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..handles import LocalHandle
from ..registry import Registry

from train_entry.failures import EXIT_INTERRUPTED, Failure  # exit code after a SIGTERM checkpoint; the message
from train_entry.events import PREFIX, parse_event  # the one definition of the event format


def _command(run_json: Path, nproc: int) -> list[str]:
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", "train_entry", "--config", str(run_json)]
    return [sys.executable, "-m", "train_entry", "--config", str(run_json)]


def stage_failure(log: Path, offset: int) -> dict[str, str]:
    """What train_entry said of its failure (its `failed` event) in `log` after byte `offset`, for the registry:
    `failure` (the located message) and `failure_kind`; empty when it said nothing (killed, crashed early)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return {}
    for line in reversed(text.splitlines()):
        event = parse_event(line)
        if event and event.get("event") == "failed":
            kind = str(event.get("kind", "error"))
            failure = Failure(kind, str(event.get("what", "")), str(event.get("cause", "")),
                              str(event.get("fix", "")), exit_code=1)  # the registry keeps the real one
            return {"failure": failure.message[:2000], "failure_kind": kind}
    return {}


def main(run_dir: str, run_id: str) -> int:
    reg = Registry()
    rec = reg.get(run_id)
    stages = LocalHandle.model_validate(rec.handle).stages
    stopping = {"flag": False}
    child: dict[str, subprocess.Popen] = {}

    def on_term(signum, frame):
        stopping["flag"] = True
        proc = child.get("p")
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    code = 0
    failure: dict[str, str] = {}
    log = Path(run_dir) / "log.txt"  # the runner's stdout, and so every stage's (LocalProvider.submit)
    for i, stage in enumerate(stages):
        run_json = Path(run_dir) / stage / "run.json"
        cfg = json.loads(run_json.read_text())
        if (Path(cfg["outputs"]["output_dir"]) / "metrics.json").exists():
            print(PREFIX + json.dumps({'event': 'stage_skipped', 'stage': i, 'reason': 'already complete'}),
                  flush=True)
            continue
        reg.update(run_id, status="running", meta={"current_stage": stage})
        print(PREFIX + json.dumps({'event': 'stage_start', 'stage': i, 'name': stage}), flush=True)
        offset = log.stat().st_size if log.exists() else 0
        nproc = int(cfg.get("distributed", {}).get("nproc_per_node", 1))
        child["p"] = subprocess.Popen(_command(run_json, nproc), stdin=subprocess.DEVNULL,
                                      env=dict(os.environ, PYTHONUNBUFFERED="1"))
        code = child["p"].wait()
        print(PREFIX + json.dumps({'event': 'stage_end', 'stage': i, 'exit_code': code}), flush=True)
        if code != 0 or stopping["flag"]:
            if code not in (0, EXIT_INTERRUPTED) and not stopping["flag"]:
                failure = stage_failure(log, offset)
            break
    if stopping["flag"] or code == EXIT_INTERRUPTED:
        status = "stopped"
    else:
        status = "completed" if code == 0 else "failed"
    reg.update(run_id, status=status, exit_code=code, meta={"finished": time.time(), **failure})
    return 0 if status == "completed" else code or 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
