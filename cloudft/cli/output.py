"""Rendering helpers shared by the commands (rich console, JSON, plan tables)."""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from ..plan import Plan
    from ..preflight import Finding


@lru_cache(maxsize=None)
def console() -> "Console":
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@lru_cache(maxsize=None)
def err_console() -> "Console":
    """Warnings and notes beside a `--json` document (stdout carries only the JSON)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, stderr=True)


def print_json(data: Any) -> None:
    """Print one JSON document on stdout (no rich markup, so it pipes into jq)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def render_plan(plan: "Plan", findings: "list[Finding]" = ()) -> None:
    """A plan as tables: stages, data, then any planner sections (memory, instance, cost)."""
    from rich.markup import escape
    from rich.table import Table

    out = console()
    spec = plan.spec
    out.print(f"[bold]{spec.name}[/] on [bold]{plan.provider}[/]  run id {plan.run_id}")
    table = Table("stage", "method", "peft", "starts from", "writes", title="stages", title_justify="left")
    for header in ("train data", "output"):  # paths wrap rather than end in "…": they are what users copy
        table.add_column(header, overflow="fold")
    for st in plan.stages:
        rc, links = st.run_config, st.links
        start = "base model" if links.init_from is None else \
            f"stage {links.init_from} ({(links.init_kind or '').replace('_', ' ')})"
        if links.reward_from is not None:
            start += f"; scored by stage {links.reward_from}"
        output = st.locations.output_dir or st.locations.output_uri or "(provider layout)"
        table.add_row(str(st.index), st.method, rc.peft.type, start, st.produces.replace("_", " "),
                      escape(rc.data.train), escape(output))
    out.print(table)
    _render_data(plan)
    t = spec.training
    steps = f"max_steps={t.max_steps}" if t.max_steps > 0 else f"epochs={t.epochs:g}"
    out.print(f"training: {steps} lr={t.learning_rate:g} batch={t.per_device_batch_size}x"
              f"{t.gradient_accumulation_steps} max_length={t.max_length} precision={t.precision} "
              f"packing={t.packing}")
    for key, value in plan.estimate.to_dict().items():
        section = Table(show_header=False, title=key, title_justify="left")
        if isinstance(value, dict):
            for k, v in value.items():
                section.add_row(escape(str(k)), escape(_fmt(v)))
        else:
            section.add_row(escape(_fmt(value)))
        out.print(section)
    _render_serving(plan)
    for w in plan.warnings:
        out.print(f"[yellow]warning:[/] {escape(w)}")
    _render_preflight(plan, findings)


def _render_serving(plan: "Plan") -> None:
    """How `cloudft deploy` would serve the run on each target (the plan's provider first), then the reasons."""
    from rich.markup import escape
    from rich.table import Table

    colour = {"adapter": "green", "weights": "green", "merged": "yellow", "refused": "red"}
    severity = {"error": "red", "warning": "yellow", "info": "cyan"}
    table = Table("target", "server", "serves", title="serving (cloudft deploy)", title_justify="left")
    ordered = sorted(plan.serving, key=lambda d: d.target.provider != plan.provider)
    for d in ordered:
        name = d.target.provider + (" (this plan)" if d.target.provider == plan.provider else "")
        table.add_row(name, escape(d.target.label), f"[{colour[d.mode]}]{escape(d.summary())}[/]")
    out = console()
    out.print(table)
    for d in ordered:
        for f in d.findings:
            out.print(f"  {d.target.provider}: [{severity[f.severity]}]{escape(f.message)}[/]")
            if f.fix:
                out.print(f"    fix: {escape(f.fix)}")
            out.print(f"    [dim]rule {escape(f.rule)}: {escape(f.source)}[/]")


def _render_preflight(plan: "Plan", findings: "list[Finding]") -> None:
    """Preflight findings: errors (submit refuses them), warnings, and what the rule is based on."""
    from rich.markup import escape

    from ..preflight import where

    out = console()
    colour = {"error": "red", "warning": "yellow", "info": "cyan"}
    for f in findings:
        out.print(f"[{colour[f.severity]}]preflight {f.severity}:[/] {escape(where(plan, f) + f.message)}")
        if f.fix:
            out.print(f"    fix: {escape(f.fix)}")
        if f.source:
            out.print(f"    [dim]rule {escape(f.rule)}: {escape(f.source)}[/]")


def _render_data(plan: "Plan") -> None:
    """Per stage: the records kept, quarantined and with errors (what submit would refuse), and where they are."""
    from rich.markup import escape
    from rich.table import Table

    from ..data.problems import REASONS

    table = Table("stage", "format", "records", "quarantined", "errors", title="data", title_justify="left")
    table.add_column("quarantine file", overflow="fold")
    for i, d in enumerate(plan.data):
        if not d.local:
            table.add_row(str(i), d.format, "(cloud URI: checked where it is read)", "", "", "")
            continue
        errors = {r: n for r, n in d.counts.items() if REASONS.get(r, ("error",))[0] == "error"}
        records = ", ".join(f"{k} {v}" for k, v in d.records.items())
        err = ", ".join(f"{r} {n}" for r, n in errors.items()) or "0"
        table.add_row(str(i), d.format, records, str(d.quarantined),
                      f"[red]{escape(err)}[/]" if errors else err, escape(d.quarantine or "") if d.quarantined else "")
    console().print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "; ".join(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str, ensure_ascii=False)
    return str(v)


def render_dry_run(provider: str, requests: Any) -> None:
    out = console()
    out.print(f"[bold]dry run[/] ({provider}): nothing was started")
    for item in requests if isinstance(requests, list) else [requests]:
        out.print_json(json.dumps(item, default=str))
