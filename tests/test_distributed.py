"""Two data-parallel processes on the CPU (torchrun + gloo), started by the local provider: both ranks end
with identical weights and only rank 0 writes the outputs."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import cloudft, write_spec


def test_two_process_data_parallel_run(tmp_path, tiny_model):
    spec = write_spec(tmp_path, tiny_model, max_steps=4, per_device_batch_size=2)
    spec.write_text(spec.read_text() + "compute: {gpus_per_node: 2}\n")
    plan = json.loads(cloudft("plan", str(spec), "--json").stdout)
    dist = plan["stages"][0]["run_config"]["distributed"]
    assert {k: dist[k] for k in ("nnodes", "nproc_per_node", "launcher", "strategy")} == {
        "nnodes": 1, "nproc_per_node": 2, "launcher": "torchrun", "strategy": "ddp"}
    proc = cloudft("submit", str(spec), timeout=400)
    assert "completed" in proc.stdout, proc.stdout + proc.stderr
    run = json.loads(cloudft("runs", "--json").stdout)[0]
    log = (Path(run["run_dir"]) / "log.txt").read_text()
    digests = {}
    for line in log.splitlines():
        if '"rank_digest"' in line:
            event = json.loads(line.split("##cloudft ", 1)[1])
            digests[event["rank"]] = event["digest"]
    assert set(digests) == {0, 1}, log[-3000:]
    assert digests[0] == digests[1]
    out = Path(run["run_dir"]) / "0-sft" / "output"
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps == sorted(set(steps)) and len(steps) == 4  # one writer: no duplicated rows
    assert log.count('"event": "train_start"') == 1 and log.count('"event": "done"') == 1
