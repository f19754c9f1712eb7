"""One module per training method (like TRL: one config + one trainer each).

Each module exposes `run(ctx: TrainContext) -> dict` that trains, saves the final model/adapter and
tokenizer to `ctx.layout.output_dir`, and returns metrics. Modules are imported only when used, so
an incompatible TRL upgrade breaks one method, not all.
"""

from __future__ import annotations

import importlib
from typing import Callable

METHODS = {
    "sft": "train_entry.methods.sft",
    "dpo": "train_entry.methods.dpo",
    "orpo": "train_entry.methods.orpo",
    "kto": "train_entry.methods.kto",
    "reward": "train_entry.methods.reward",
    "rl": "train_entry.methods.rl",
}


def get_method(name: str) -> Callable:
    try:
        module = importlib.import_module(METHODS[name])
    except KeyError:
        raise ValueError(f"unknown method {name}") from None
    return module.run
