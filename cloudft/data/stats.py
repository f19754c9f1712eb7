"""Dataset statistics: counts, token-length percentiles (the real tokenizer), a length histogram PNG, role and
turn statistics for conversations, label balance for preference and KTO data."""

from __future__ import annotations

from array import array
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional

from .tokens import TokenCounter, text_length

PERCENTILES = (50, 90, 95, 99)
BATCH = 1024


def _percentiles(values: array) -> dict[str, Any]:
    if not values:
        return {}
    import numpy as np

    arr = np.frombuffer(values, dtype=np.uint32) if values.typecode == "I" else np.asarray(values)
    out: dict[str, Any] = {f"p{p}": int(np.percentile(arr, p, method="nearest")) for p in PERCENTILES}
    out.update(min=int(arr.min()), mean=round(float(arr.mean()), 1), max=int(arr.max()))
    return out


class StatsCollector:
    """Accumulates statistics over canonical records, streaming (lengths are kept as 4-byte ints)."""

    def __init__(self, counter: Optional[TokenCounter] = None):
        self.counter = counter
        self.unit = "tokens" if counter is not None else "characters"
        self.lengths = array("I")
        self.records = 0
        self.roles: Counter = Counter()
        self.turns = array("I")
        self.labels: Counter = Counter()
        self.chosen_longer = 0
        self.pairs = 0
        self._pending: list[dict] = []

    def add(self, record: dict) -> None:
        self.records += 1
        msgs = record.get("messages")
        if msgs is None and isinstance(record.get("prompt"), list):
            msgs = record["prompt"] + (record.get("chosen") or record.get("completion") or [])
        if msgs:
            self.roles.update(m["role"] for m in msgs)
            self.turns.append(sum(1 for m in msgs if m["role"] == "user"))
        if "label" in record:
            self.labels["desirable" if record["label"] else "undesirable"] += 1
        if "chosen" in record:
            self.pairs += 1
            self.chosen_longer += _size(record["chosen"]) > _size(record["rejected"])
        if self.counter is None:
            self.lengths.append(text_length(record))
        else:
            self._pending.append(record)
            if len(self._pending) >= BATCH:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.lengths.extend(self.counter.lengths(self._pending))
            self._pending = []

    def result(self) -> dict[str, Any]:
        """The statistics as a JSON-ready dict."""
        if self.counter is not None:
            self._flush()
        out: dict[str, Any] = {"records": self.records, "length_unit": self.unit,
                               "length": _percentiles(self.lengths)}
        if self.roles:
            out["roles"] = dict(self.roles)
            out["user_turns"] = _percentiles(self.turns)
        if self.labels:
            total = sum(self.labels.values())
            out["labels"] = dict(self.labels)
            out["desirable_fraction"] = round(self.labels["desirable"] / total, 3)
        if self.pairs:
            out["pairs"] = self.pairs
            out["chosen_longer_fraction"] = round(self.chosen_longer / self.pairs, 3)
        return out

    def histogram(self, path: Path, title: str = "") -> Path:
        """Write the length histogram as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.hist(list(self.lengths), bins=min(60, max(10, int(len(self.lengths) ** 0.5))), color="#4C72B0")
        ax.set_xlabel(f"record length ({self.unit})")
        ax.set_ylabel("records")
        ax.set_title(title or f"{self.records} records")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str) else sum(len(m["content"]) for m in value)


def collect(records: Iterable[dict], counter: Optional[TokenCounter] = None) -> StatsCollector:
    """Stats over an iterable of canonical records."""
    stats = StatsCollector(counter)
    for rec in records:
        stats.add(rec)
    return stats
