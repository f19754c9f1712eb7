"""Follow a run's log with a progress bar built from train_entry's `##cloudft {json}` events."""

from __future__ import annotations

from typing import Any, Optional

from train_entry.events import LOG_PREFIX, parse_event

from .output import console

ERROR_PREFIX = LOG_PREFIX + "error:"  # train_entry's located failure message (failures.report)


def _rate(event: dict[str, Any]) -> str:
    rate, unit = event.get("rate"), event.get("unit", "")
    return f"{rate:.1f} {unit}/s" if isinstance(rate, (int, float)) else ""


def _count(event: dict[str, Any]) -> str:
    done, total, unit = event.get("done", 0), event.get("total"), event.get("unit", "")
    return f"{done}/{total} {unit}" if total is not None else f"{done} {unit}"


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for a train_entry event (for `cloudft logs`)."""
    kind = event.get("event", "?")
    if kind == "step":
        loss = f"  loss {event['loss']:.4f}" if isinstance(event.get("loss"), (int, float)) else ""
        return f"step {event.get('step')}/{event.get('max_steps')}{loss}"
    if kind == "train_start":
        resumed = f", resumed at step {event['resumed_from']}" if event.get("resumed_from") else ""
        return (f"== stage {event.get('stage')} {event.get('method', '')}: training {event.get('max_steps')} steps"
                f"{resumed}")
    if kind == "phase_start":
        total = f": {event['total']} {event.get('unit', '')}" if event.get("total") is not None else ""
        return f"== {event.get('label', event.get('phase'))}{total}"
    if kind == "progress":
        parts = [_count(event), _rate(event)]
        if isinstance(event.get("elapsed"), (int, float)):
            parts.append(f"{event['elapsed']:.0f}s")
        eta = _eta(event)
        if eta:
            parts.append(f"about {eta} left")
        return f"   {event.get('label', event.get('phase'))}: " + ", ".join(p for p in parts if p)
    if kind == "phase_end":
        status = "" if event.get("ok", True) else " (failed)"
        rate = _rate(event)
        return (f"== {event.get('label', event.get('phase'))}: {_count(event)} in {event.get('seconds', 0):.1f}s"
                + (f" ({rate})" if rate else "") + status)
    if kind == "failed":
        where = f"; full traceback in {event['log']}" if event.get("log") else ""
        return f"== failed ({event.get('kind', 'error')}, exit code {event.get('exit_code')}){where}"
    rest = ", ".join(f"{k}={v}" for k, v in event.items() if k != "event")
    return f"== {kind.replace('_', ' ')}" + (f": {rest}" if rest else "")


def _eta(event: dict[str, Any]) -> Optional[str]:
    """Time left at the current rate, e.g. '3m20s' (None when unknown)."""
    rate, total, done = event.get("rate"), event.get("total"), event.get("done") or 0
    if not isinstance(rate, (int, float)) or rate <= 0 or total is None:
        return None
    left = max(0, int((total - done) / rate))
    return f"{left // 60}m{left % 60:02d}s" if left >= 60 else f"{left}s"


class PhaseBars:
    """Progress-bar tasks for train_entry's events: one per training stage, one per long phase."""

    def __init__(self, progress):
        self.progress = progress
        self.train: Optional[int] = None
        self.phases: dict[str, int] = {}

    def handle(self, event: dict[str, Any]) -> None:
        p, kind = self.progress, event.get("event")
        label = str(event.get("label", event.get("phase", "")))
        if kind == "train_start":
            desc = f"stage {event.get('stage', 0)} {event.get('method', '')}"
            self.train = p.add_task(desc, total=event.get("max_steps") or None, info="")
        elif kind == "step" and self.train is not None:
            info = f"loss {event['loss']:.4f}" if isinstance(event.get("loss"), (int, float)) else ""
            p.update(self.train, completed=event.get("step", 0), info=info)
        elif kind == "train_end" and self.train is not None:
            p.update(self.train, completed=p.tasks[self.train].total or 0)
        elif kind == "phase_start":
            self.phases[label] = p.add_task(label, total=event.get("total"), info="")
        elif kind in ("progress", "phase_end"):
            task = self.phases.get(label)
            if task is None:
                task = self.phases[label] = p.add_task(label, total=event.get("total"), info="")
            done = event.get("done", 0)
            info = _rate(event)
            if kind == "phase_end":
                self.phases.pop(label, None)
                info = f"{_count(event)} in {event.get('seconds', 0):.1f}s" + (f", {info}" if info else "")
                p.update(task, total=event.get("total") or done or 1, completed=done or event.get("total") or 1,
                         info=info)
            else:
                p.update(task, completed=done, info=info)
        elif kind == "stage_skipped":
            p.console.print(f"stage {event.get('stage')} already complete, skipped")


def follow_run(provider, rec):
    """Stream `rec`'s log until it ends; Ctrl-C asks the run to stop (it checkpoints first)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rich.markup import escape

    from ..registry import Registry

    out = console()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=out, transient=False)
    bars = PhaseBars(progress)
    try:
        with progress:
            for line in provider.logs(rec, follow=True):
                event = parse_event(line)
                if event is None:
                    if line.lstrip().startswith(ERROR_PREFIX):  # train_entry's one located failure message
                        progress.console.print(f"[bold red]{escape(line)}[/]", markup=True, highlight=False)
                    elif line.strip():
                        progress.console.print(f"[dim]{escape(line)}[/]", markup=True, highlight=False)
                    continue
                bars.handle(event)
    except KeyboardInterrupt:
        out.print("[yellow]stopping: the run checkpoints, then exits (Ctrl-C again to leave it running)[/]")
        try:
            rec = provider.stop(rec)
        except KeyboardInterrupt:
            pass
        return Registry().get(rec.run_id)
    return provider.status(Registry().get(rec.run_id))
