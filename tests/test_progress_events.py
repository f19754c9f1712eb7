"""Progress events for the long phases outside the training loop, and how `cloudft logs` / the progress bar
show them (counts and rates)."""

from __future__ import annotations

import io
import json

import pytest
from methods_fixtures import preference_split, run_stage, write_config

from cloudft.cli.follow import PhaseBars, describe_event, parse_event
from helpers import EXAMPLE_DATA


def events_of(text: str) -> list[dict]:
    return [e for e in (parse_event(line) for line in text.splitlines()) if e is not None]


def of_phase(events: list[dict], label: str) -> list[dict]:
    return [e for e in events if e.get("label") == label]


def test_dpo_reference_precompute_shows_progress_while_it_runs(tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("CLOUDFT_PROGRESS_SECONDS", "0")  # every batch: the run is tiny
    train, _ = preference_split(tmp_path, n_train=8, n_val=2)
    cfg = write_config(tmp_path, "dpo", tiny_model, "dpo", train, peft={"type": "none"},  # full FT: precomputed
                       training={"max_steps": 2, "per_device_batch_size": 2}, eval={"enabled": False})
    rc, _ = run_stage(cfg)
    assert rc == 0
    events = events_of(capsys.readouterr().out)
    ref = of_phase(events, "reference log-probs (train)")
    assert [e["event"] for e in ref[:1] + ref[-1:]] == ["phase_start", "phase_end"]
    assert ref[0]["phase"] == "ref_logprobs" and ref[0]["total"] == 8 and ref[0]["unit"] == "samples"
    during = [e for e in ref if e["event"] == "progress"]
    assert [e["done"] for e in during] == [2, 4, 6, 8]  # one line per batch of 2 pairs, before the phase ends
    assert all(e["rate"] > 0 and e["total"] == 8 for e in during)
    assert ref[-1]["done"] == 8 and ref[-1]["ok"] and ref[-1]["seconds"] > 0
    assert events.index(ref[-1]) < next(i for i, e in enumerate(events) if e["event"] == "train_start")
    line = describe_event(during[0])
    assert line.startswith(f"   reference log-probs (train): 2/8 samples, {during[0]['rate']:.1f} samples/s")
    assert "left" in line


def test_tokenize_pack_evaluate_generate_merge_phases(tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("CLOUDFT_PROGRESS_SECONDS", "0")
    cfg = write_config(tmp_path, "sft", tiny_model, "sft", EXAMPLE_DATA / "quickstart.jsonl",
                       peft={"type": "lora", "target_modules": ["q_proj", "v_proj"]},
                       data={"validation_split": 0.2}, training={"max_steps": 2, "packing": True},
                       eval={"max_samples": 4, "max_new_tokens": 4, "prompts": ["Compute 2 + 3."]},
                       export={"merge": True})
    rc, _ = run_stage(cfg)
    assert rc == 0
    events = events_of(capsys.readouterr().out)
    starts = [e for e in events if e["event"] == "phase_start"]
    ends = [e for e in events if e["event"] == "phase_end"]
    assert {"load", "tokenize", "pack", "evaluate", "generate", "merge"} <= {e["phase"] for e in starts}
    load = next(e for e in ends if e["label"] == "load the base model")
    assert load["unit"] == "MiB" and load["done"] >= 1
    assert sorted(e["label"] for e in starts) == sorted(e["label"] for e in ends)  # every phase ends
    assert all(e["ok"] for e in ends)
    tokenize = next(e for e in ends if e["label"] == "Tokenizing train dataset")
    assert tokenize["done"] == tokenize["total"] > 0 and tokenize["rate"] > 0
    generate = next(e for e in ends if e["label"] == "report generations, tuned")
    assert generate["done"] == generate["total"] == 1 and generate["unit"] == "prompts"
    merge = next(e for e in ends if e["phase"] == "merge")
    assert merge["done"] > 0 and merge["unit"] == "MiB"
    order = [e["phase"] for e in starts]
    assert order.index("merge") < order.index("generate")  # the export step runs before evaluation


def test_short_phases_stay_quiet_unless_announced(capsys, monkeypatch):
    from train_entry.progress import Phase

    monkeypatch.setenv("CLOUDFT_PROGRESS_SECONDS", "5")
    with Phase("tokenize", total=3, unit="rows", announce=False) as quiet:
        quiet.advance(3)
    with Phase("merge", unit="MiB") as loud:
        loud.advance(7)
    events = events_of(capsys.readouterr().out)
    assert [(e["event"], e["phase"]) for e in events] == [("phase_start", "merge"), ("phase_end", "merge")]
    assert events[1]["done"] == 7 and events[1]["total"] is None
    monkeypatch.setenv("CLOUDFT_PROGRESS_SECONDS", "0")
    with Phase("tokenize", total=3, unit="rows", announce=False) as shown:
        shown.advance(2)
        shown.advance(5)  # never past the total
    events = events_of(capsys.readouterr().out)
    assert [e["event"] for e in events] == ["phase_start", "progress", "progress", "phase_end"]
    assert [e.get("done") for e in events[1:]] == [2, 3, 3]


def test_the_progress_bar_shows_phases_with_counts_and_rates():
    from rich.console import Console
    from rich.progress import Progress, TextColumn

    progress = Progress(TextColumn("{task.description}"), TextColumn("{task.fields[info]}"),
                        console=Console(file=io.StringIO(), width=120))
    bars = PhaseBars(progress)
    base = {"phase": "ref_logprobs", "label": "reference log-probs (train)", "unit": "samples", "total": 1900}
    bars.handle({"event": "phase_start", **base})
    bars.handle({"event": "progress", **base, "done": 120, "rate": 4.2, "elapsed": 28.6})
    (task,) = progress.tasks
    assert (task.description, task.completed, task.total) == ("reference log-probs (train)", 120, 1900)
    assert task.fields["info"] == "4.2 samples/s"
    bars.handle({"event": "phase_end", **base, "done": 1900, "rate": 4.22, "seconds": 450.2, "ok": True})
    assert task.completed == 1900 and task.fields["info"] == "1900/1900 samples in 450.2s, 4.2 samples/s"
    bars.handle({"event": "train_start", "stage": 1, "method": "dpo", "max_steps": 10})
    bars.handle({"event": "step", "step": 3, "max_steps": 10, "loss": 0.69})
    assert progress.tasks[1].completed == 3 and progress.tasks[1].fields["info"] == "loss 0.6900"


@pytest.mark.parametrize("event, line", [
    ({"event": "phase_start", "phase": "tokenize", "label": "Tokenizing train dataset", "unit": "rows",
      "total": 1900}, "== Tokenizing train dataset: 1900 rows"),
    ({"event": "progress", "phase": "ref_logprobs", "label": "reference log-probs (train)", "unit": "samples",
      "total": 1900, "done": 100, "rate": 4.0, "elapsed": 25.0},
     "   reference log-probs (train): 100/1900 samples, 4.0 samples/s, 25s, about 7m30s left"),
    ({"event": "phase_end", "phase": "merge", "label": "merge the adapter into the weights", "unit": "MiB",
      "total": None, "done": 2400, "rate": 80.0, "seconds": 30.0, "ok": True},
     "== merge the adapter into the weights: 2400 MiB in 30.0s (80.0 MiB/s)"),
    ({"event": "failed", "kind": "out_of_memory", "exit_code": 5, "log": "/o/train_entry.log"},
     "== failed (out_of_memory, exit code 5); full traceback in /o/train_entry.log"),
])
def test_logs_describe_phase_events(event, line):
    assert describe_event(json.loads(json.dumps(event))) == line
