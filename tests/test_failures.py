"""Every known failure class reaches the user as ONE located message (what failed, the cause, the fix) on the
console, as a plain line and a `failed` event, with its own exit code; the full traceback is kept in the
run's log file (output_dir/train_entry.log), never printed on the console."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from methods_fixtures import run_stage, write_config

from helpers import EXAMPLE_DATA, REPO, read_jsonl, write_jsonl
from train_entry.failures import (EXIT_BAD_CHECKPOINT, EXIT_BAD_INPUT, EXIT_GATED_MODEL, EXIT_MODEL_NOT_FOUND,
                                  EXIT_OUT_OF_MEMORY)
from train_entry.layout import LOG_NAME

TRACEBACK = "Traceback (most recent call last)"
LORA = {"type": "lora", "target_modules": ["q_proj", "v_proj"]}


def located(console: str, log_file: Path, kind: str) -> dict:
    """The one `failed` event on the console, checked against the plain line and the log file."""
    errors = [line for line in console.splitlines() if line.startswith("[train_entry] error:")]
    events = [json.loads(line.split("##cloudft ", 1)[1]) for line in console.splitlines()
              if line.startswith("##cloudft ") and '"event": "failed"' in line]
    assert len(errors) == 1 and len(events) == 1, console[-3000:]
    event = events[0]
    assert event["kind"] == kind, event
    assert event["what"] and event["cause"] and event["fix"]
    assert errors[0] == (f"[train_entry] error: {event['what']}: {event['cause']}. Fix: {event['fix']} "
                         f"(traceback: {log_file})")
    assert TRACEBACK not in console
    assert event["log"] == str(log_file)
    assert TRACEBACK in log_file.read_text()
    return event


def _run(capsys, config: Path, *flags: str) -> tuple[int, str, Path]:
    rc, out = run_stage(config, *flags)
    captured = capsys.readouterr()
    return rc, captured.out + captured.err, out / LOG_NAME


def test_missing_model_folder(tmp_path, capsys):
    missing = tmp_path / "models" / "no-such-model"
    cfg = write_config(tmp_path, "missing", missing, "sft", EXAMPLE_DATA / "quickstart.jsonl")
    rc, console, log_file = _run(capsys, cfg)
    assert rc == EXIT_MODEL_NOT_FOUND
    event = located(console, log_file, "model_not_found")
    assert str(missing) in event["what"] and "is not a folder on this machine" in event["cause"]
    assert "HFValidationError" in log_file.read_text()


def test_hub_model_not_cached_while_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import (earlier tests imported it): set what it read, too,
    # or the hub is tried (and retried for ~45 s) instead of the offline path
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    cfg = write_config(tmp_path, "offline", "cloudft-tests/not-a-cached-model", "sft",
                       EXAMPLE_DATA / "quickstart.jsonl")
    rc, console, log_file = _run(capsys, cfg)
    assert rc == EXIT_MODEL_NOT_FOUND
    event = located(console, log_file, "model_not_found")
    assert "HF_HUB_OFFLINE" in event["cause"] and "hf download cloudft-tests/not-a-cached-model" in event["fix"]


def test_unreachable_hub_is_named(monkeypatch):
    """The exception chain transformers raises when the hub cannot be reached (seen with HF_ENDPOINT on a
    closed port: OSError <- LocalEntryNotFoundError <- ConnectError, after ~45 s of the hub's retries, too slow
    for a test), classified without the network."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    from train_entry.failures import ModelLoadError, describe

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    try:
        try:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") \
                from LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")
        except OSError as exc:
            raise ModelLoadError("tokenizer", "org/some-model") from exc
    except ModelLoadError as err:
        failure = describe(err)
    assert (failure.kind, failure.exit_code) == ("model_not_found", EXIT_MODEL_NOT_FOUND)
    assert "the Hugging Face hub cannot be reached and 'org/some-model' is not in the cache" in failure.cause
    assert "hf download org/some-model" in failure.fix


class GatedHub(BaseHTTPRequestHandler):
    """Answers like huggingface.co does for a gated model requested without an authorised token
    (huggingface_hub.utils._http.hf_raise_for_status maps `X-Error-Code: GatedRepo` to GatedRepoError)."""

    def _deny(self):
        self.send_response(401)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to model meta-llama/Meta-Llama-3-8B is restricted. You must "
                                            "have access to it and be authenticated to access it. Please log in.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _deny

    def log_message(self, *args):
        pass


def test_gated_model_without_a_token(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), GatedHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = write_config(tmp_path, "gated", "meta-llama/Meta-Llama-3-8B", "sft", EXAMPLE_DATA / "quickstart.jsonl")
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HUB_OFFLINE="0",
                   HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        proc = subprocess.run([sys.executable, "-m", "train_entry", "--config", str(cfg)], env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert proc.returncode == EXIT_GATED_MODEL, proc.stdout + proc.stderr
    log_file = cfg.parent / "output" / LOG_NAME
    event = located(proc.stdout + proc.stderr, log_file, "gated_model")
    assert "no Hugging Face token is set (HF_TOKEN)" in event["cause"]
    assert "https://huggingface.co/meta-llama/Meta-Llama-3-8B" in event["fix"] and "HF_TOKEN" in event["fix"]
    assert "GatedRepoError" in log_file.read_text()


@pytest.mark.parametrize("error, device", [
    (lambda: __import__("torch").OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
        "1.06 GiB is free."), "GPU"),
    (lambda: MemoryError(), "host"),
], ids=["cuda", "host"])
def test_out_of_memory_in_a_training_step(tmp_path, tiny_model, capsys, monkeypatch, error, device):
    import torch

    real_step = torch.optim.AdamW.step
    calls = []

    def step(self, *args, **kwargs):  # the optimizer runs out of memory on the second step
        calls.append(1)
        if len(calls) == 2:
            raise error()
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    planned = {"peak_memory_gb": 21.5, "device_memory_gb": 24.0, "instance": "ml.g5.12xlarge"}
    cfg = write_config(tmp_path, "oom", tiny_model, "sft", EXAMPLE_DATA / "quickstart.jsonl", peft=LORA,
                       training={"max_steps": 4, "per_device_batch_size": 4, "max_length": 512},
                       **({"planned": planned} if device == "GPU" else {}))
    rc, console, log_file = _run(capsys, cfg)
    assert rc == EXIT_OUT_OF_MEMORY
    event = located(console, log_file, "out_of_memory")
    assert event["what"] == f"stage 0 (sft): out of {device} memory"
    assert "per_device_batch_size=4, max_length=512" in event["cause"] and "precision=fp32" in event["cause"]
    assert "per_device_batch_size: 2 with gradient_accumulation_steps: 2" in event["fix"]
    assert "gradient_checkpointing: true" in event["fix"] and "max_length: 256" in event["fix"]
    assert ("peft.type: qlora" in event["fix"]) == (device == "GPU")
    expected = "cloudft's plan estimated a peak of 21.5 GiB per device on ml.g5.12xlarge (24.0 GiB per GPU)"
    assert (expected in event["cause"]) == (device == "GPU")  # the plan's estimate, where the run config has it
    assert "in step" in log_file.read_text()  # the frame that raised is in the kept traceback


def test_data_error_names_the_line(tmp_path, tiny_model, capsys):
    rows = read_jsonl(EXAMPLE_DATA / "quickstart.jsonl")[:6]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    bad.write_text(bad.read_text() + '{"prompt": "unterminated\n')
    rc, console, log_file = _run(capsys, write_config(tmp_path, "data", tiny_model, "sft", bad))
    assert rc == EXIT_BAD_INPUT
    event = located(console, log_file, "data")
    assert f"{bad}:7: invalid JSON" in event["cause"] and "cloudft data validate" in event["fix"]


def test_checkpoint_that_cannot_be_read(tmp_path, tiny_model, capsys):
    cfg = write_config(tmp_path, "ckpt", tiny_model, "sft", EXAMPLE_DATA / "quickstart.jsonl", peft=LORA,
                       training={"max_steps": 2, "save_steps": 1}, eval={"enabled": False})
    rc, out = run_stage(cfg)
    assert rc == 0
    ckpt = cfg.parent / "checkpoints" / "checkpoint-2"
    weights = ckpt / "adapter_model.safetensors"
    weights.write_bytes(b"\xff" * weights.stat().st_size)  # damaged in place: same size, so the marker agrees
    (out / "metrics.json").unlink()
    capsys.readouterr()
    rc, console, log_file = _run(capsys, cfg)
    assert rc == EXIT_BAD_CHECKPOINT
    event = located(console, log_file, "checkpoint")
    assert event["what"] == f"resuming from the checkpoint {ckpt}"
    assert f"move {ckpt} aside" in event["fix"] and "--rerun" in event["fix"]


def test_a_failed_local_run_keeps_its_located_failure_in_the_registry(tmp_path, tiny_model):
    """`cloudft status` (and `--json`) says why a local run failed: the `failed` event's message and class, read
    by the runner from the stage's own output, not just an exit code."""
    import shutil

    from test_cli import cloudft, write_spec

    model = tmp_path / "no-weights"
    shutil.copytree(tiny_model, model)
    for weights in model.glob("*.safetensors"):
        weights.unlink()  # config.json is there (the preflight passes); from_pretrained finds no weights
    spec = write_spec(tmp_path, model)
    proc = cloudft("submit", str(spec), "--json", check=False)
    assert proc.returncode != 0
    run_id = json.loads(cloudft("runs", "--json").stdout)[0]["run_id"]
    status = json.loads(cloudft("status", run_id, "--json").stdout)
    assert status["status"] == "failed" and status["exit_code"] == EXIT_MODEL_NOT_FOUND
    assert status["meta"]["failure_kind"] == "model_not_found"
    assert str(model) in status["meta"]["failure"] and ". Fix: " in status["meta"]["failure"]
    shown = cloudft("status", run_id).stdout
    assert "failure_kind: model_not_found" in shown and "failure: " in shown
