"""The training and held-out data of a stage: one rule, used by training and by evaluation.

Held-out data is the validation file, else a seeded `data.validation_split` fraction of train, so evaluation
never scores a record the stage trained on.
"""

from __future__ import annotations

from typing import Any, Optional

from .config import RunConfig
from .data import load_dataset
from .layout import Layout


def split_held_out(ds, fraction: float, seed: int):
    """(train, held-out): a seeded split."""
    parts = ds.train_test_split(test_size=fraction, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def load_split(cfg: RunConfig, layout: Layout, method: str):
    """(train, held-out or None, format): datasets in canonical columns for `method`."""
    train_ds, fmt = load_dataset(layout.train, cfg.data.format, method, cfg.data.columns)
    eval_ds = None
    if layout.validation is not None:
        eval_ds, _ = load_dataset(layout.validation, fmt, method, cfg.data.columns)
    elif cfg.data.validation_split > 0:
        train_ds, eval_ds = split_held_out(train_ds, cfg.data.validation_split, cfg.training.seed)
    return train_ds, eval_ds, fmt


def held_out_records(cfg: RunConfig, layout: Layout) -> tuple[list[dict[str, Any]], Optional[str]]:
    """Up to eval.max_samples held-out records and their format ([] when the stage has no held-out data)."""
    if layout.validation is None and cfg.data.validation_split <= 0:
        return [], None
    _, ds, fmt = load_split(cfg, layout, cfg.method)
    return ds.select(range(min(len(ds), cfg.eval.max_samples))).to_list(), fmt
