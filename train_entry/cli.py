"""`python -m train_entry --config run.json [overrides]` and `python -m train_entry merge ...`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

from .config import RunConfig
from .events import emit, log

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 143


def _train_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train_entry", description="Run one training stage from a run config.")
    ap.add_argument("--config", required=True, help="run-config JSON (see train_entry/config.py)")
    ap.add_argument("--output-dir")
    ap.add_argument("--checkpoint-dir")
    ap.add_argument("--train", help="data file, or a folder holding one (Azure inputs, SageMaker channels)")
    ap.add_argument("--validation")
    ap.add_argument("--init-adapter", help="adapter folder of the previous stage")
    ap.add_argument("--reward-model", help="reward model folder (rl)")
    return ap


def _merge_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train_entry merge", description="Write merged full weights.")
    ap.add_argument("--adapter", required=True, help="adapter folder (adapter_config.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", help="base model (default: the adapter's base_model_name_or_path)")
    return ap


def _fail(message: str, code: int, failure_file: Optional[Path] = None) -> int:
    log(f"error: {message}")
    emit("failed", reason=message, exit_code=code)
    if failure_file is not None:
        try:
            failure_file.parent.mkdir(parents=True, exist_ok=True)
            failure_file.write_text(message[:1000])
        except OSError:
            pass
    return code


def train(argv: list[str]) -> int:
    args = _train_parser().parse_args(argv)
    from pydantic import ValidationError

    from .data import DataError
    from .layout import LayoutError, resolve

    config_path = Path(args.config)
    try:
        cfg = RunConfig.read(config_path)
    except FileNotFoundError:
        return _fail(f"run config {config_path} does not exist", EXIT_BAD_INPUT)
    except (ValidationError, json.JSONDecodeError) as exc:
        return _fail(f"run config {config_path} is invalid: {exc}", EXIT_BAD_INPUT)
    try:
        layout = resolve(cfg, config_path, output_dir=args.output_dir, checkpoint_dir=args.checkpoint_dir,
                         train=args.train, validation=args.validation, init_adapter=args.init_adapter,
                         reward_model=args.reward_model)
    except LayoutError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)

    import logging

    # before .context: its imports load bitsandbytes, which warns about an optional CPU kernel package at import
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from .context import TrainContext
    from .methods import get_method
    from .runtime import resolve_precision, world

    w = world()
    for name in cfg.env_secrets:
        if name not in os.environ:
            log(f"warning: secret env var {name} is not set")
    ctx = TrainContext(cfg=cfg, layout=layout, world=w, precision=resolve_precision(cfg.training.precision))
    ctx.policy.minutes = cfg.training.save_minutes
    ctx.policy.install()
    # transformers reads the TensorBoard directory from the environment
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(layout.logging_dir))
    if w.is_main:
        layout.output_dir.mkdir(parents=True, exist_ok=True)
        layout.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        log(f"stage {cfg.stage} method={cfg.method} peft={cfg.peft.type} precision={ctx.precision} "
            f"world={w.world_size} platform={layout.platform}")
        log(f"train={layout.train} output={layout.output_dir} checkpoints={layout.checkpoint_dir}")
    from .runtime import quiet_libraries

    quiet_libraries()
    from transformers import set_seed

    set_seed(cfg.training.seed)
    started = time.time()
    try:
        metrics = get_method(cfg.method)(ctx)
    except DataError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT, layout.failure_file)
    except Exception as exc:  # noqa: BLE001 - report, then fail the job with the reason
        traceback.print_exc()
        return _fail(f"{type(exc).__name__}: {exc}", 1, layout.failure_file)
    if ctx.policy.interrupted:
        log("stopped after writing a checkpoint; a new run with the same checkpoint dir resumes")
        emit("interrupted", checkpoint_dir=str(layout.checkpoint_dir))
        return EXIT_INTERRUPTED
    metrics["train_seconds"] = round(time.time() - started, 2)
    if w.is_main:
        _after_training(ctx, metrics)
        emit("done", output_dir=str(layout.output_dir))
    return EXIT_OK


def _after_training(ctx, metrics: dict) -> None:
    """Evaluation, report and exports (main process), then metrics.json."""
    from .evaluate import evaluate_and_report
    from .tiny import TINY_NOTE, is_tiny_model

    if is_tiny_model(ctx.cfg.base_model):
        metrics["note"] = TINY_NOTE
    if ctx.cfg.eval.enabled:
        metrics.update(evaluate_and_report(ctx, metrics))
    out = ctx.layout.output_dir / "metrics.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, default=str))
    tmp.replace(out)
    log(f"metrics: {out}")


def merge(argv: list[str]) -> int:
    args = _merge_parser().parse_args(argv)
    from .export import merge_adapter

    try:
        path = merge_adapter(Path(args.adapter), Path(args.out), base=args.base)
    except ValueError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    log(f"merged model written to {path}")
    return EXIT_OK


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        sys.exit(merge(argv[1:]))
    if argv and argv[0] == "train":
        argv = argv[1:]
    sys.exit(train(argv))
