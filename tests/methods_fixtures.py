"""Helpers for the training-method tests: tiny data sets, run configs, and running train_entry in-process."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any, Optional

from helpers import EXAMPLE_DATA, HH_RLHF, read_jsonl, shared_file, write_jsonl

HH_FILE = HH_RLHF

# small and fast: a few optimizer steps on sequences of at most 64 tokens
FAST_TRAINING = {"max_steps": 3, "per_device_batch_size": 2, "max_length": 64, "learning_rate": 5e-3,
                 "logging_steps": 1, "save_steps": 100, "warmup_ratio": 0.0, "lr_scheduler": "constant"}
FAST_PEFT = {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.0}


def hh_to_preference(record: dict[str, str]) -> dict[str, Any]:
    """Raw HH-RLHF (two full transcripts) -> conversational prompt/chosen/rejected (shared leading turns)."""

    def turns(text: str) -> list[dict[str, str]]:
        parts = re.split(r"\n\n(Human|Assistant): ", "\n\n" + text.strip())
        return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
                for who, body in zip(parts[1::2], parts[2::2])]

    chosen, rejected = turns(record["chosen"]), turns(record["rejected"])
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    return {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}


def hh_records(n: int, max_chars: int = 400) -> list[dict[str, Any]]:
    """The first `n` short HH-RLHF pairs (single assistant reply after a user turn) in conversational form."""
    out = []
    with gzip.open(shared_file(HH_FILE), "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = hh_to_preference(json.loads(line))
            ok = (rec["prompt"] and rec["prompt"][-1]["role"] == "user" and len(rec["chosen"]) == 1
                  and len(rec["rejected"]) == 1 and rec["chosen"] != rec["rejected"]
                  and len(json.dumps(rec)) <= max_chars)
            if ok:
                out.append(rec)
            if len(out) >= n:
                break
    return out


def preference_split(tmp: Path, n_train: int = 24, n_val: int = 8) -> tuple[Path, Path]:
    rows = read_jsonl(EXAMPLE_DATA / "preferences.jsonl")
    return (write_jsonl(tmp / "pref-train.jsonl", rows[:n_train]),
            write_jsonl(tmp / "pref-val.jsonl", rows[-n_val:]))


def kto_data(tmp: Path, n: int = 12) -> tuple[Path, Path]:
    """Unpaired thumbs up/down: each preference pair gives one good and one bad completion."""
    rows = read_jsonl(EXAMPLE_DATA / "preferences.jsonl")
    recs = []
    for r in rows[: n + 4]:
        recs.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        recs.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    return write_jsonl(tmp / "kto-train.jsonl", recs[: 2 * n]), write_jsonl(tmp / "kto-val.jsonl", recs[2 * n:])


def write_config(tmp: Path, name: str, base_model: Path, method: str, train: Path,
                 validation: Optional[Path] = None, **sections: Any) -> Path:
    """A run config for one stage in `tmp/name/` (outputs in `tmp/name/output`, checkpoints beside it)."""
    training = {**FAST_TRAINING, **sections.pop("training", {})}
    cfg = {
        "name": name, "base_model": str(base_model), "method": method,
        "peft": {**FAST_PEFT, **sections.pop("peft", {})},
        "data": {"train": str(train), **({"validation": str(validation)} if validation else {}),
                 **sections.pop("data", {})},
        "training": training,
        "tracking": {"tensorboard": False},
        "eval": {"max_samples": 8, "max_new_tokens": 8, **sections.pop("eval", {})},
        **sections,
    }
    from train_entry.config import RunConfig

    return RunConfig.model_validate(cfg).write(tmp / name / "run.json")


def run_stage(config: Path, *flags: str) -> tuple[int, Path]:
    """Run train_entry in this process (no second torch import); (exit code, output dir)."""
    from train_entry.cli import train

    rc = train(["--config", str(config), *flags])
    return rc, config.parent / "output"


def metrics_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())
