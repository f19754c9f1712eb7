"""train_entry's failures as ONE located message each: what failed, the likely cause, the fix.

`describe(exc, ...)` sorts an exception into a known class; `report(...)` prints the message once as a plain
line and as a `##cloudft` `failed` event, keeps the full traceback in the run's log file (never on the
console), writes SageMaker's failure file, and returns the class's exit code.

Exit codes (also in docs/architecture.md):
    0 done · 1 unexpected error · 2 bad config or data · 3 model or tokenizer not found ·
    4 gated model without access · 5 out of memory · 6 checkpoint cannot be read · 143 stopped by SIGTERM
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .events import emit, log, write_to_log

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_MODEL_NOT_FOUND, EXIT_GATED_MODEL, EXIT_OUT_OF_MEMORY, EXIT_BAD_CHECKPOINT = 3, 4, 5, 6
EXIT_INTERRUPTED = 143

# transformers.Trainer methods that read a checkpoint when resuming (and ours: `_load_from_checkpoint`)
CHECKPOINT_READERS = {"_load_from_checkpoint", "_load_optimizer_and_scheduler", "_load_rng_state", "_load_scaler",
                      "_load_best_model"}
HUB_ERRORS = {"GatedRepoError", "RepositoryNotFoundError", "LocalEntryNotFoundError", "HFValidationError",
              "OfflineModeIsEnabled"}


class ModelLoadError(Exception):
    """`from_pretrained` failed for `source` while loading `what` (base model, tokenizer, reward model...)."""

    def __init__(self, what: str, source: str):
        super().__init__(f"cannot load the {what} from {source}")
        self.what, self.source = what, source


@dataclass
class Failure:
    kind: str  # config | data | model_not_found | gated_model | out_of_memory | checkpoint | error
    what: str
    cause: str
    fix: str
    exit_code: int

    @property
    def message(self) -> str:
        return f"{self.what}: {self.cause}. Fix: {self.fix}"


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for e in _chain(exc) for cls in type(e).__mro__}


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


# -- classes ----------------------------------------------------------------------------------------------

def _looks_like_path(source: str) -> bool:
    """A file-system path rather than a hub id ("org/name")."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1


def _model_failure(err: ModelLoadError, exc: BaseException) -> Failure:
    names, src = _names(exc), err.source
    what = f"loading the {err.what} '{src}'"
    hub_fix = (f"download it once where the hub is reachable (`hf download {src}` with the same HF_HOME), or point "
               "base_model at a local folder written by save_pretrained")
    if "GatedRepoError" in names:
        token = bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
        cause = (f"'{src}' is a gated model and the token in HF_TOKEN has no access to it" if token
                 else f"'{src}' is a gated model and no Hugging Face token is set (HF_TOKEN)")
        fix = (f"accept the model's licence at https://huggingface.co/{src} with your account, then give the run "
               "your token: `secrets: {HF_TOKEN: env:HF_TOKEN}` in the spec (locally: export HF_TOKEN)")
        return Failure("gated_model", what, cause, fix, EXIT_GATED_MODEL)
    path = Path(src).expanduser()
    if path.is_dir():
        present = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        return Failure("model_not_found", what,
                       f"the folder {path} is not a complete model ({_short(exc, 160)}); it holds {present}",
                       "point it at a folder written by save_pretrained (config.json, weights, tokenizer files)",
                       EXIT_MODEL_NOT_FOUND)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if "HFValidationError" in names or (_looks_like_path(src) and not path.exists()):
        return Failure("model_not_found", what,
                       f"{src} is not a folder on this machine (and not a Hugging Face model id)",
                       "check the path (relative paths are relative to the run config) or use a hub id such as "
                       "meta-llama/Llama-3.2-1B", EXIT_MODEL_NOT_FOUND)
    if offline and names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "EntryNotFoundError"}:
        return Failure("model_not_found", what,
                       f"'{src}' is not in the Hugging Face cache ({_hf_home()}) and HF_HUB_OFFLINE is set, so it "
                       "cannot be downloaded", hub_fix + ", or unset HF_HUB_OFFLINE", EXIT_MODEL_NOT_FOUND)
    if names & {"LocalEntryNotFoundError", "ConnectError", "ConnectionError", "ConnectTimeout", "TimeoutException"}:
        return Failure("model_not_found", what,
                       f"the Hugging Face hub cannot be reached and '{src}' is not in the cache ({_hf_home()})",
                       hub_fix, EXIT_MODEL_NOT_FOUND)
    if "RepositoryNotFoundError" in names:
        return Failure("model_not_found", what,
                       f"there is no model '{src}' on the Hugging Face hub (or it is private and the token "
                       "has no access)", "check the model id; for a private model give the run HF_TOKEN",
                       EXIT_MODEL_NOT_FOUND)
    return Failure("model_not_found", what, _short(exc), "check base_model (a local folder or a hub model id)",
                   EXIT_MODEL_NOT_FOUND)


def _hf_home() -> str:
    """The hub cache folder this process reads."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"


def _is_oom(exc: BaseException) -> bool:
    names = _names(exc)
    if names & {"OutOfMemoryError", "MemoryError"}:
        return True
    text = " ".join(str(e) for e in _chain(exc)).lower()
    return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def _oom_failure(exc: BaseException, cfg, where: str, precision: Optional[str]) -> Failure:
    text = " ".join(str(e) for e in _chain(exc))
    gpu = "cuda" in text.lower() or "gpu" in text.lower()
    device = "GPU" if gpu else "host"
    what = f"{where}: out of {device} memory"
    if cfg is None:
        return Failure("out_of_memory", what, _short(exc), "use a machine with more memory", EXIT_OUT_OF_MEMORY)
    t, peft = cfg.training, cfg.peft.type
    settings = (f"per_device_batch_size={t.per_device_batch_size}, max_length={t.max_length}, "
                f"gradient_accumulation_steps={t.gradient_accumulation_steps}, "
                f"gradient_checkpointing={str(t.gradient_checkpointing).lower()}, peft.type={peft}, "
                f"precision={precision or t.precision}")
    cause = (f"this run's settings need more {device} memory than there is ({settings}{_memory_facts(gpu)})"
             f"{_planned_memory(cfg)}")
    fits = []
    if t.per_device_batch_size > 1:
        fits.append(f"training.per_device_batch_size: {t.per_device_batch_size // 2} with "
                    f"gradient_accumulation_steps: {t.gradient_accumulation_steps * 2} (same effective batch)")
    if not t.gradient_checkpointing:
        fits.append("training.gradient_checkpointing: true (activations recomputed, about 30% slower)")
    if t.max_length > 256:
        fits.append(f"training.max_length: {t.max_length // 2} (if your samples allow it)")
    if peft == "none":
        fits.append("peft.type: lora (no optimizer state for the full weights)")
    if peft in ("none", "lora", "dora") and gpu:
        fits.append("peft.type: qlora (4-bit base weights)")
    fits.append("or a larger instance (`cloudft plan SPEC` shows the memory estimate per instance)")
    return Failure("out_of_memory", what, cause, "; ".join(fits), EXIT_OUT_OF_MEMORY)


def _planned_memory(cfg) -> str:
    """What cloudft's plan expected (the run config's `planned` section), to set beside what happened."""
    planned = getattr(cfg, "planned", None)
    if planned is None or planned.peak_memory_gb is None:
        return ""
    where = f" on {planned.instance}" if planned.instance else ""
    device = f" ({planned.device_memory_gb:.1f} GiB per GPU)" if planned.device_memory_gb else ""
    return f"; cloudft's plan estimated a peak of {planned.peak_memory_gb:.1f} GiB per device{where}{device}"


def _memory_facts(gpu: bool) -> str:
    try:
        if gpu:
            import torch

            if torch.cuda.is_available():
                total = torch.cuda.get_device_properties(0).total_memory / 2**30
                peak = torch.cuda.max_memory_allocated() / 2**30
                return f"; GPU memory {total:.1f} GiB, peak allocated {peak:.1f} GiB"
            return ""
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return f"; host memory {pages * size / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError, RuntimeError):
        return ""


def _reads_checkpoint(exc: BaseException) -> bool:
    return any(frame.name in CHECKPOINT_READERS
               for e in _chain(exc) for frame in traceback.extract_tb(e.__traceback__))


def describe(exc: BaseException, cfg=None, where: str = "training", checkpoint: Optional[str] = None,
             precision: Optional[str] = None) -> Failure:
    """The located message for `exc`. `where` names the part of the run that was going on; `checkpoint` is
    the checkpoint the run resumed from, if any; `precision` the resolved training precision."""
    from .data import DataError
    from .layout import LayoutError
    from .sharding import ShardingError

    err = next((e for e in _chain(exc) if isinstance(e, ModelLoadError)), None)
    if isinstance(exc, LayoutError):
        return Failure("config", "resolving the run's paths", str(exc), "fix the path in the run config or flag",
                       EXIT_BAD_INPUT)
    if isinstance(exc, ShardingError):
        return Failure("config", "setting up sharded training (distributed.strategy: fsdp)", exc.cause, exc.fix,
                       EXIT_BAD_INPUT)
    if isinstance(exc, DataError):
        return Failure("data", "checking the stage's data and inputs", str(exc),
                       "fix or drop the record (`cloudft data validate FILE` lists every problem; "
                       "`cloudft data prepare` converts other formats)", EXIT_BAD_INPUT)
    if _is_oom(exc):
        return _oom_failure(exc, cfg, where, precision)
    if err is None and _names(exc) & HUB_ERRORS:  # a load outside our loaders (e.g. inside TRL)
        err = ModelLoadError("model", cfg.base_model if cfg is not None else "?")
    if err is not None:
        return _model_failure(err, exc)
    if checkpoint and _reads_checkpoint(exc):
        return Failure("checkpoint", f"resuming from the checkpoint {checkpoint}",
                       f"it cannot be read ({type(exc).__name__}: {_short(exc, 200)}); it is damaged or was "
                       "written by a different model or PEFT setup",
                       f"move {checkpoint} aside to resume from the previous complete checkpoint, or start "
                       "afresh (`cloudft submit --rerun`)", EXIT_BAD_CHECKPOINT)
    return Failure("error", where, f"{type(exc).__name__}: {_short(exc)}",
                   "see the traceback in the log file; if the cause is not yours, report it with that file",
                   EXIT_FAILED)


def report(failure: Failure, exc: Optional[BaseException] = None, log_file: Optional[Path] = None,
           failure_file: Optional[Path] = None, **fields: Any) -> int:
    """Print the located message once (plain line + `failed` event), keep the traceback in `log_file`,
    write SageMaker's failure file; returns the exit code."""
    kept = None
    if exc is not None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if log_file is not None and write_to_log(log_file, text):
            kept = log_file
        else:  # nowhere to keep it: better on the console than lost
            import sys

            sys.stderr.write(text)
    where = f" (traceback: {kept})" if kept else ""
    log(f"error: {failure.message}{where}")
    emit("failed", kind=failure.kind, what=failure.what, cause=failure.cause, fix=failure.fix,
         exit_code=failure.exit_code, log=str(kept) if kept else None, **fields)
    if failure_file is not None:
        try:
            failure_file.parent.mkdir(parents=True, exist_ok=True)
            failure_file.write_text(failure.message[:1000])  # SageMaker keeps 1 KB as FailureReason
        except OSError:
            pass
    return failure.exit_code
