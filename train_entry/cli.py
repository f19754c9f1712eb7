"""`python -m train_entry --config run.json [overrides]` and `python -m train_entry merge ...`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from .config import RunConfig
from .events import close_log, emit, log, open_log
from .failures import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Failure,  # noqa: F401 - re-exported
                       describe, report)


def _train_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train_entry", description="Run one training stage from a run config.")
    ap.add_argument("--config", required=True, help="run-config JSON (see train_entry/config.py)")
    ap.add_argument("--output-dir")
    ap.add_argument("--checkpoint-dir")
    ap.add_argument("--train", help="data file, or a folder holding one (Azure inputs, SageMaker channels)")
    ap.add_argument("--validation")
    ap.add_argument("--init-adapter", help="adapter folder of the previous stage")
    ap.add_argument("--init-model", help="full weights of an earlier stage (full fine-tuning), instead of base_model")
    ap.add_argument("--reward-model", help="reward model folder (rl)")
    return ap


def _merge_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train_entry merge", description="Write merged full weights.")
    ap.add_argument("--adapter", required=True, help="adapter folder (adapter_config.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", help="base model (default: the adapter's base_model_name_or_path)")
    return ap


def _fail(message: str, code: int, fix: str = "fix the run config or the flag") -> int:
    """A failure before the run's paths are known (bad config or flags): one message, no log file."""
    return report(Failure("config", "reading the run config", message, fix, code))


def train(argv: list[str]) -> int:
    args = _train_parser().parse_args(argv)
    from pydantic import ValidationError

    from .layout import LayoutError, resolve

    config_path = Path(args.config)
    try:
        cfg = RunConfig.read(config_path)
    except FileNotFoundError:
        return _fail(f"run config {config_path} does not exist", EXIT_BAD_INPUT, "pass the path of a run config")
    except (ValidationError, json.JSONDecodeError) as exc:
        return _fail(f"run config {config_path} is invalid: {exc}", EXIT_BAD_INPUT)
    try:
        layout = resolve(cfg, config_path, output_dir=args.output_dir, checkpoint_dir=args.checkpoint_dir,
                         train=args.train, validation=args.validation, init_adapter=args.init_adapter,
                         reward_model=args.reward_model, init_model=args.init_model)
    except LayoutError as exc:
        return report(describe(exc, cfg))

    from .runtime import die_with_launcher, world

    die_with_launcher()
    w = world()
    log_file = layout.log_file if w.is_main else layout.log_file.with_name(f"train_entry.rank{w.rank}.log")
    open_log(log_file)
    try:
        return _run(cfg, layout, w, log_file)
    finally:
        close_log()


def _run(cfg: RunConfig, layout, w, log_file: Path) -> int:
    """Train, export, evaluate and report one stage; any failure becomes one located message."""
    import logging

    from . import progress

    # before .context: its imports load bitsandbytes, which warns about an optional CPU kernel package at import
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from .context import TrainContext
    from .methods import get_method
    from .runtime import resolve_precision

    for name in cfg.env_secrets:
        if name not in os.environ:
            log(f"warning: secret env var {name} is not set")
    ctx = TrainContext(cfg=cfg, layout=layout, world=w, precision=resolve_precision(cfg.training.precision))
    ctx.policy.minutes = cfg.training.save_minutes
    ctx.policy.per_node = cfg.distributed.nproc_per_node
    # transformers reads the TensorBoard directory from the environment
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(layout.logging_dir))
    if w.is_main:
        layout.output_dir.mkdir(parents=True, exist_ok=True)
        layout.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        log(f"stage {cfg.stage} method={cfg.method} peft={cfg.peft.type} precision={ctx.precision} "
            f"world={w.world_size} platform={layout.platform}")
        log(f"train={layout.train} output={layout.output_dir} checkpoints={layout.checkpoint_dir} log={log_file}")
        if layout.init_model is not None:
            log(f"starting from the full weights in {layout.init_model} (instead of {cfg.base_model})")
    from .runtime import quiet_libraries

    quiet_libraries()
    from transformers import set_seed

    set_seed(cfg.training.seed)
    progress.reset()
    step = [f"stage {cfg.stage} ({cfg.method})"]
    started = time.time()
    ctx.policy.install()
    try:
        metrics = get_method(cfg.method)(ctx)
        if ctx.policy.interrupted:
            log("stopped after writing a checkpoint; a new run with the same checkpoint dir resumes")
            emit("interrupted", checkpoint_dir=str(layout.checkpoint_dir))
            return EXIT_INTERRUPTED
        metrics["train_seconds"] = round(time.time() - started, 2)
        if w.is_main:
            _after_training(ctx, metrics, step)
            emit("done", output_dir=str(layout.output_dir))
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - every failure becomes one located message (traceback: log file)
        where = step[0] + (f", {progress.failed_in()}" if progress.failed_in() else "")
        try:
            failure = describe(exc, cfg, where=where, checkpoint=ctx.resumed_from, precision=ctx.precision)
        except Exception:  # noqa: BLE001 - describing must never hide the failure itself
            failure = Failure("error", where, f"{type(exc).__name__}: {exc}", "see the traceback in the log file",
                              EXIT_FAILED)
        return report(failure, exc, log_file, layout.failure_file, stage=cfg.stage, method=cfg.method)
    finally:
        ctx.policy.uninstall()


def _after_training(ctx, metrics: dict, step: list[str]) -> None:
    """Exports, evaluation and the report (main process), then metrics.json. Exports run before evaluation
    and whether or not it is enabled; a failed evaluation is a note in the report."""
    from .artifact import describe_output
    from .export import run_exports
    from .report import write_report
    from .tiny import TINY_NOTE, is_tiny_model

    if is_tiny_model(ctx.cfg.base_model):
        metrics["note"] = TINY_NOTE
    metrics.update(describe_output(ctx))
    step[0] = f"stage {ctx.cfg.stage} ({ctx.cfg.method}) export"
    exports, notes = run_exports(ctx)
    metrics.update(exports)
    generations: list[dict] = []
    if ctx.cfg.eval.enabled:
        from .evaluate import evaluate

        step[0] = f"stage {ctx.cfg.stage} ({ctx.cfg.method}) evaluation"
        results, generations, eval_notes = evaluate(ctx, exports)
        metrics.update(results)
        notes += eval_notes
    step[0] = f"stage {ctx.cfg.stage} ({ctx.cfg.method}) report"
    path = write_report(ctx, metrics, generations, notes)
    metrics["report"] = str(path)
    log(f"report: {path}")
    out = ctx.layout.output_dir / "metrics.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, default=str))
    tmp.replace(out)
    log(f"metrics: {out}")


def merge(argv: list[str]) -> int:
    args = _merge_parser().parse_args(argv)
    from .export import NotMergeable, merge_adapter

    try:
        path = merge_adapter(Path(args.adapter), Path(args.out), base=args.base)
    except NotMergeable as exc:
        return report(Failure("config", f"merging {args.adapter}", str(exc), "pass a LoRA/QLoRA/DoRA adapter folder",
                              EXIT_BAD_INPUT))
    except Exception as exc:  # noqa: BLE001 - one located message, the traceback on stderr (no run log here)
        return report(describe(exc, where=f"merging {args.adapter}"), exc)
    log(f"merged model written to {path}")
    return EXIT_OK


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        sys.exit(merge(argv[1:]))
    if argv and argv[0] == "train":
        argv = argv[1:]
    sys.exit(train(argv))
