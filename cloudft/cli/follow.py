"""Follow a run's log with a progress bar built from train_entry's `##cloudft {json}` events."""

from __future__ import annotations

import json
from typing import Any, Optional

from train_entry.events import PREFIX as EVENT_PREFIX  # one definition of the log-event format

from .output import console


def parse_event(line: str) -> Optional[dict[str, Any]]:
    """The event carried by a log line, or None for an ordinary line."""
    idx = line.find(EVENT_PREFIX)
    if idx < 0:
        return None
    try:
        return json.loads(line[idx + len(EVENT_PREFIX):])
    except json.JSONDecodeError:
        return None


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for a train_entry event (for `cloudft logs`)."""
    kind = event.get("event", "?")
    if kind == "step":
        loss = f"  loss {event['loss']:.4f}" if isinstance(event.get("loss"), (int, float)) else ""
        return f"step {event.get('step')}/{event.get('max_steps')}{loss}"
    if kind == "train_start":
        resumed = f", resumed at step {event['resumed_from']}" if event.get("resumed_from") else ""
        return f"== stage {event.get('stage')} {event.get('method', '')}: training {event.get('max_steps')} steps{resumed}"
    rest = ", ".join(f"{k}={v}" for k, v in event.items() if k != "event")
    return f"== {kind.replace('_', ' ')}" + (f": {rest}" if rest else "")


def follow_run(provider, rec):
    """Stream `rec`'s log until it ends; Ctrl-C asks the run to stop (it checkpoints first)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rich.markup import escape

    from ..registry import Registry

    out = console()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=out, transient=False)
    task = None
    try:
        with progress:
            for line in provider.logs(rec, follow=True):
                event = parse_event(line)
                if event is None:
                    if line.strip():
                        progress.console.print(f"[dim]{escape(line)}[/]", markup=True, highlight=False)
                    continue
                kind = event.get("event")
                if kind == "train_start":
                    desc = f"stage {event.get('stage', 0)} {event.get('method', '')}"
                    task = progress.add_task(desc, total=event.get("max_steps") or None, info="")
                elif kind == "step" and task is not None:
                    info = f"loss {event['loss']:.4f}" if "loss" in event else ""
                    progress.update(task, completed=event.get("step", 0), info=info)
                elif kind == "train_end" and task is not None:
                    progress.update(task, completed=progress.tasks[task].total or 0)
                elif kind == "stage_skipped":
                    progress.console.print(f"stage {event.get('stage')} already complete, skipped")
    except KeyboardInterrupt:
        out.print("[yellow]stopping: the run checkpoints, then exits (Ctrl-C again to leave it running)[/]")
        try:
            rec = provider.stop(rec)
        except KeyboardInterrupt:
            pass
        return Registry().get(rec.run_id)
    return provider.status(Registry().get(rec.run_id))
