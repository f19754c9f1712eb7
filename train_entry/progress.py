"""Progress events for the long phases outside the training loop: model loading, tokenization and packing,
reference log-prob precompute, evaluation, generation for the report, merge and export.

A phase prints `##cloudft` events (rank 0 only):

    phase_start {phase, label, total, unit}
    progress    {phase, label, done, total, unit, rate, elapsed}     at most every CLOUDFT_PROGRESS_SECONDS (5)
    phase_end   {phase, label, done, total, unit, rate, seconds}

`cloudft/cli/follow.py` turns them into progress bars and readable lines with counts and rates. Phases that
may be short and frequent (each `datasets.map` TRL runs) stay silent unless they last longer than the
interval; the others (`announce=True`) always print their start and end.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from .events import emit

LOAD, TOKENIZE, PACK, DATA = "load", "tokenize", "pack", "data"
REF_LOGPROBS, EVALUATE, GENERATE, MERGE, QUANTIZE = "ref_logprobs", "evaluate", "generate", "merge", "quantize"

_active: list["Phase"] = []
_failed_in: list[str] = []  # labels of the phases an exception left, innermost first


def interval() -> float:
    """Seconds between two progress events of one phase (CLOUDFT_PROGRESS_SECONDS, default 5)."""
    try:
        return max(0.0, float(os.environ.get("CLOUDFT_PROGRESS_SECONDS", "5")))
    except ValueError:
        return 5.0


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def failed_in() -> Optional[str]:
    """The label of the innermost phase an exception left since `reset()` (named in failure messages)."""
    return _failed_in[0] if _failed_in else None


def reset() -> None:
    _active.clear()
    _failed_in.clear()


class Phase:
    """One long phase with a known or unknown total; use as a context manager and call `advance(n)`."""

    def __init__(self, phase: str, total: Optional[int] = None, unit: str = "items", label: Optional[str] = None,
                 announce: bool = True, **fields: Any):
        self.phase, self.total, self.unit = phase, total, unit
        self.label = label or phase
        self.fields = fields
        self.announce = announce
        self.done = 0
        self.visible = False
        self.started = self.last = 0.0

    def __enter__(self) -> "Phase":
        self.started = self.last = time.monotonic()
        _active.append(self)
        if self.announce or interval() == 0:
            self._show()
        return self

    def _base(self) -> dict[str, Any]:
        return {"phase": self.phase, "label": self.label, "unit": self.unit, "total": self.total, **self.fields}

    def _show(self) -> None:
        if not self.visible and _is_main():
            emit("phase_start", **self._base())
        self.visible = True

    def rate(self) -> Optional[float]:
        elapsed = time.monotonic() - self.started
        return round(self.done / elapsed, 3) if elapsed > 0 and self.done else None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.total is not None:
            self.done = min(self.done, self.total)
        now = time.monotonic()
        if now - self.last < interval():
            return
        self.last = now
        self._show()
        if _is_main():
            emit("progress", **self._base(), done=self.done, rate=self.rate(), elapsed=round(now - self.started, 1))

    def __exit__(self, exc_type, exc, tb) -> None:
        if _active and _active[-1] is self:
            _active.pop()
        if exc_type is not None:
            _failed_in.append(self.label)
        if self.visible and _is_main():
            emit("phase_end", **self._base(), done=self.done, rate=self.rate(),
                 seconds=round(time.monotonic() - self.started, 2), ok=exc_type is None)


# -- datasets.map (TRL's tokenization, packing, truncation) -------------------------------------------

def _map_phase(desc: str) -> str:
    low = desc.lower()
    if "tokeniz" in low:
        return TOKENIZE
    if "pack" in low:
        return PACK
    return DATA


def _map_bar_class():
    from tqdm.auto import tqdm

    class MapBar(tqdm):
        """Stands in for datasets' progress bar: draws nothing, reports the map as a phase."""

        def __init__(self, *args: Any, **kwargs: Any):
            desc = str(kwargs.get("desc") or "Map")
            total = kwargs.get("total")
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._phase = Phase(_map_phase(desc), total=total, unit="rows", label=desc, announce=False)
            self._phase.__enter__()
            self._phase.done = int(kwargs.get("initial") or 0)
            self._open = True

        def update(self, n: float = 1) -> None:
            self._phase.advance(int(n))

        def close(self) -> None:
            if getattr(self, "_open", False):
                self._open = False
                self._phase.__exit__(None, None, None)
            super().close()

    return MapBar


@contextmanager
def dataset_maps() -> Iterator[None]:
    """Report every `datasets.Dataset.map` run inside the block (TRL tokenizes and packs in its trainers'
    constructors) as a phase. datasets draws its bars with `hf_tqdm`; it is swapped for the block's duration."""
    try:
        import datasets.arrow_dataset as arrow
    except ImportError:
        yield
        return
    original = getattr(arrow, "hf_tqdm", None)
    if original is None:  # a datasets release that draws its bars differently: no map progress
        yield
        return
    arrow.hf_tqdm = _map_bar_class()
    try:
        yield
    finally:
        arrow.hf_tqdm = original


# -- TRL trainers ---------------------------------------------------------------------------------------

class ReferenceProgress:
    """Mixin for TRL's DPO/KTO trainers: the reference log-prob precompute (`precompute_ref_log_probs`)
    reports its progress (samples scored, samples/s)."""

    _ref_phase: Optional[Phase] = None

    def _precompute_ref_logps(self, dataset, name, batch_size):
        with Phase(REF_LOGPROBS, total=len(dataset), unit="samples",
                   label=f"reference log-probs ({name})") as phase:
            self._ref_phase = phase
            try:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            finally:
                self._ref_phase = None

    def compute_ref_log_probs(self, model, inputs):
        result = super().compute_ref_log_probs(model, inputs)
        if self._ref_phase is not None:
            first = result[0] if isinstance(result, tuple) else result
            self._ref_phase.advance(len(first) * max(1, self.accelerator.num_processes))
        return result


def with_progress(trainer_cls: type) -> type:
    """`trainer_cls` with reference log-prob progress when it has a precompute pass (DPO, KTO)."""
    if hasattr(trainer_cls, "_precompute_ref_logps") and hasattr(trainer_cls, "compute_ref_log_probs"):
        return type(trainer_cls.__name__, (ReferenceProgress, trainer_cls), {})
    return trainer_cls
