"""Core commands: init, validate, schema, plan, submit, runs, status, logs, stop, artifacts, report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import click

from rich.markup import escape

from ..errors import CloudftError
from .output import console, err_console, print_json

PROVIDER = click.option("--provider", "-p", type=click.Choice(["local", "aws", "azure"]), default="local",
                        show_default=True, help="Where the job runs.")
STACK = click.option("--stack", default=None, help="Read cloud settings from this Pulumi stack's outputs.")


def _load(spec_path: str, provider: Optional[str] = None, stack: Optional[str] = None, section_only: bool = False):
    """Load the spec and validate it for `provider`. `section_only` (plan, submit): capability problems are left to
    the preflight, which reports them together with everything else it finds."""
    from ..providers import get_provider
    from ..spec import load_spec

    spec = load_spec(spec_path)
    prov = get_provider(provider) if provider else None
    if prov is not None:
        prov.stack = stack
        if section_only:
            prov.validate_section(spec)
        else:
            prov.validate(spec)
    return spec, prov


def _plan(spec, prov, rerun: bool = False):
    from ..plan import build_plan

    return build_plan(spec, prov.name, locate=prov.locate, rerun=rerun)


@click.command("init")
@click.argument("path", type=click.Path(dir_okay=False), default="cloudft.yaml")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_cmd(path: str, force: bool) -> None:
    """Write a commented starter job spec to PATH (default: cloudft.yaml)."""
    from importlib.resources import files

    target = Path(path)
    if target.exists() and not force:
        raise CloudftError(f"{path} already exists", hint="choose another path or pass --force")
    try:
        target.write_text(files("cloudft").joinpath("starter.yaml").read_text())
    except OSError as exc:
        raise CloudftError(f"cannot write {path}: {exc.strerror or exc}",
                           hint="check that its folder exists and is writable") from None
    console().print(f"wrote [bold]{path}[/]; next: [cyan]cloudft validate {path}[/]")


@click.command("validate")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@click.option("--provider", "-p", type=click.Choice(["local", "aws", "azure"]), default=None,
              help="Also check that provider's section of the spec.")
def validate_cmd(specs: tuple[str, ...], provider: Optional[str]) -> None:
    """Check job specs: types, unknown keys, missing fields, each reported with file:line:col."""
    from ..errors import SpecError

    failed: list[SpecError] = []
    for path in specs:
        try:
            spec, _ = _load(path, provider)
        except SpecError as exc:
            failed.append(exc)
            continue
        stages = " → ".join(s.method for s in spec.stage_list())
        console().print(f"[green]ok[/] {path}: {spec.name} ({stages}, peft={spec.peft.type})")
        _warn_missing_data(spec)
    if failed:
        problems = [p for exc in failed for p in exc.problems]
        raise SpecError(problems)


def _warn_missing_data(spec) -> None:
    """validate checks the spec only; a local data file that is not there yet is worth a warning."""
    from train_entry.config import is_remote

    seen = set()
    for stage in spec.stage_list():
        data = stage.data or spec.data
        for field in ("train", "validation"):
            value = getattr(data, field)
            if not value or is_remote(value) or value in seen:
                continue
            seen.add(value)
            p = Path(value).expanduser()
            p = p if p.is_absolute() else spec.base_dir / p
            if not p.is_file():
                console().print(f"[yellow]warning:[/] data.{field}: {p} does not exist yet "
                                "(plan and submit need it)")


@click.command("schema")
@click.option("--run-config", is_flag=True, help="Print the run-config schema (train_entry's input) instead.")
def schema_cmd(run_config: bool) -> None:
    """Print the JSON Schema of the job spec (point yaml-language-server at it for completion)."""
    if run_config:
        from train_entry.config import dump_schema

        print_json(dump_schema())
    else:
        from ..spec import json_schema

        print_json(json_schema())


@click.command("plan")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@PROVIDER
@STACK
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object (a list for several specs).")
def plan_cmd(specs: tuple[str, ...], provider: str, stack: Optional[str], as_json: bool) -> None:
    """Resolve specs into plans: run configs, data, outputs, and (when known) memory, instance and cost."""
    plans = []
    for path in specs:
        spec, prov = _load(path, provider, stack, section_only=True)
        plan = _plan(spec, prov)
        plans.append((plan, prov.checks(plan)))
    if as_json:
        dicts = [{**p.to_dict(), "preflight": [f.to_dict() for f in found]} for p, found in plans]
        print_json(dicts[0] if len(dicts) == 1 else dicts)
        return
    from .output import render_plan

    for p, found in plans:
        render_plan(p, found)


@click.command("submit")
@click.argument("spec_path", metavar="SPEC", type=click.Path())
@PROVIDER
@STACK
@click.option("--detach", "-d", is_flag=True, help="Return once the job has started (follow later with logs -f).")
@click.option("--dry-run", is_flag=True, help="Show what would be sent/written; start nothing.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="With --dry-run: write generated job files here (azure).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--force", is_flag=True,
              help="Submit despite budget limits or data errors (trains on the clean records).")
@click.option("--rerun", is_flag=True,
              help="Start afresh: no resuming from an earlier run's checkpoints, and a new cloud job even if "
                   "an identical one already ran (by default the same spec and data resume).")
def submit_cmd(spec_path: str, provider: str, stack: Optional[str], detach: bool, dry_run: bool,
               out_dir: Optional[str], as_json: bool, force: bool, rerun: bool) -> None:
    """Validate SPEC, check its data and budget, and start it on the provider."""
    from ..plan import check_before_submit

    spec, prov = _load(spec_path, provider, stack, section_only=True)
    plan = _plan(spec, prov, rerun=rerun)
    from ..preflight import enforce

    notes = check_before_submit(plan, force=force)  # the data and the budget first: the most concrete problems
    notes += enforce(plan, prov.checks(plan), force=force)
    prov.check_installed()
    prov.check_submit(spec)
    for note in notes:
        (err_console() if as_json else console()).print(f"[yellow]warning:[/] {escape(note)}")
    if dry_run:
        result = prov.submit(plan, dry_run=True, out_dir=out_dir)
        if as_json:
            print_json(result)
        else:
            from .output import render_dry_run

            render_dry_run(prov.name, result)
        return
    rec = prov.submit(plan)
    if as_json and detach:
        print_json({"run_id": rec.run_id, "provider": rec.provider, "status": rec.status,
                    "external_id": rec.external_id, "run_dir": rec.run_dir})
        return
    console().print(f"submitted [bold]{rec.run_id}[/] on {prov.name}")
    if detach:
        console().print(f"follow with: [cyan]cloudft logs {rec.run_id} --follow[/]")
        return
    from .follow import follow_run

    rec = follow_run(prov, rec)
    _print_outcome(rec)
    if rec.status != "completed":
        raise SystemExit(1)


# metrics.json keys worth a line at the end of a run: (key, label)
HEADLINES = (
    ("train_loss", "train loss"),
    ("val_loss_base", "validation loss, base"),
    ("val_loss_tuned", "validation loss, tuned"),
    ("val_ppl_tuned", "validation perplexity, tuned"),
    ("pref_accuracy", "held-out preference accuracy"),
    ("reward_margin", "held-out reward margin"),
    ("eval_accuracy", "reward model accuracy"),
)


def headline(metrics: dict) -> list[str]:
    """The report's headline numbers, one line each."""
    return [f"{label}: {metrics[key]:.4g}" for key, label in HEADLINES
            if isinstance(metrics.get(key), (int, float))]


def _print_outcome(rec) -> None:
    out = console()
    colour = "green" if rec.status == "completed" else "red"
    out.print(f"[{colour}]{rec.status}[/] {rec.run_id}")
    if rec.provider != "local":
        return
    from train_entry.artifact import label  # what the stage wrote: adapter, full weights or reward model

    from ..providers import get_provider
    from ..stages import stage_artifact

    run_dir = Path(rec.run_dir or ".")
    handle = get_provider(rec.provider).handle(rec)
    notes: list[str] = []
    for stage in handle.stages:
        o = run_dir / stage / "output"
        if (o / "metrics.json").exists():
            metrics = json.loads((o / "metrics.json").read_text())
            peft = str(handle.peft.type) if handle.peft else "lora"
            what = label(metrics) if metrics.get("artifact") else \
                label({"artifact": stage_artifact(stage.split("-", 1)[1], peft), "peft": peft})
            out.print(f"  stage {stage}")
            out.print(f"    {what}: {o}")
            out.print(f"    metrics:  {o / 'metrics.json'}")
            if (o / "report.md").exists():
                out.print(f"    report:   {o / 'report.md'}")
            for line in headline(metrics):
                out.print(f"      {line}")
            if isinstance(metrics.get("note"), str) and metrics["note"] not in notes:
                notes.append(metrics["note"])
    out.print(f"  log:        {run_dir / 'log.txt'}")
    for note in notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    _resume_hint(rec)


def _resume_hint(rec) -> None:
    """After a stop: the same spec and data resume from the checkpoint it wrote."""
    if rec.status == "stopped" and rec.spec_path:
        flag = "" if rec.provider == "local" else f" --provider {rec.provider}"
        console().print(f"resume with: [cyan]cloudft submit {rec.spec_path}{flag}[/]")


def _record(run_id: str):
    from ..providers import get_provider
    from ..registry import Registry

    rec = Registry().get(run_id)
    prov = get_provider(rec.provider)
    return prov, prov.status(rec)


@click.command("runs")
@click.option("--provider", "-p", default=None, type=click.Choice(["local", "aws", "azure"]),
              help="Only this provider's runs.")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs_cmd(provider: Optional[str], limit: int, as_json: bool) -> None:
    """List recent runs (newest first)."""
    from ..registry import Registry

    from ..providers import get_provider

    recs = Registry().list(limit=limit, provider=provider)
    if as_json:
        print_json([r.__dict__ for r in recs])
        return
    if not recs:
        console().print("no runs yet" + (f" on {provider}" if provider else "")
                        + f"; start one with: [cyan]cloudft submit SPEC --provider {provider or 'local'}[/]")
        return
    from rich.table import Column, Table

    table = Table("provider", Column("status", no_wrap=True), "started", "stages")
    # run ids are what users copy into status/logs/stop: never cut them short
    table.columns.insert(0, Column("run", no_wrap=True, min_width=max((len(r.run_id) for r in recs), default=3)))
    for r in recs:
        table.add_row(r.run_id, r.provider, r.status, time.strftime("%m-%d %H:%M", time.localtime(r.created)),
                      _stages(get_provider(r.provider), r))
    console().print(table)


def _stages(prov, rec) -> str:
    """A run's stages for the listing; one unreadable registry entry must not hide the others."""
    try:
        return " → ".join(prov.handle(rec).stages)
    except CloudftError:
        return "(entry unreadable: written by another cloudft version)"


@click.command("status")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def status_cmd(run_id: str, as_json: bool) -> None:
    """Show RUN's status (refreshed from its provider)."""
    _, rec = _record(run_id)
    if as_json:
        print_json(rec.__dict__)
        return
    out = console()
    out.print(f"[bold]{rec.run_id}[/]  {rec.provider}  [bold]{rec.status}[/]")
    if rec.external_id:
        out.print(f"  job:       {rec.external_id}")
    if rec.exit_code is not None:
        out.print(f"  exit code: {rec.exit_code}")
    for key, value in rec.meta.items():
        if key == "runner":
            continue  # the runner's process identity: cloudft's own bookkeeping
        if key in ("started", "finished") and isinstance(value, (int, float)):
            value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        out.print(f"  {key}: {escape(str(value))}")


@click.command("logs")
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@click.option("--raw", is_flag=True, help="Print train_entry's `##cloudft {json}` event lines as they are.")
def logs_cmd(run_id: str, follow: bool, raw: bool) -> None:
    """Print RUN's log (progress events as readable lines unless --raw)."""
    from .follow import describe_event, parse_event

    prov, rec = _record(run_id)
    for line in prov.logs(rec, follow=follow):
        event = None if raw else parse_event(line)
        click.echo(line if event is None else describe_event(event))


@click.command("stop")
@click.argument("run_id")
def stop_cmd(run_id: str) -> None:
    """Stop RUN. Training checkpoints before it exits, so a later submit resumes."""
    prov, rec = _record(run_id)
    rec = prov.stop(rec)
    console().print(f"{rec.run_id}: {rec.status}")
    _resume_hint(rec)


@click.command("artifacts")
@click.argument("run_id")
@click.option("--dest", type=click.Path(file_okay=False), default=None, help="Download into this directory.")
@click.option("--overwrite", is_flag=True, help="Write into --dest even where it already holds files.")
def artifacts_cmd(run_id: str, dest: Optional[str], overwrite: bool) -> None:
    """Show (local) or download (cloud) RUN's outputs: adapter, metrics, report."""
    prov, rec = _record(run_id)
    if dest and not overwrite:
        _refuse_to_overwrite(Path(dest))
    path = prov.artifacts(rec, Path(dest) if dest else None)
    console().print(str(path))


def _refuse_to_overwrite(dest: Path, shown: int = 5) -> None:
    """--dest must be new or empty: the outputs' names (adapter_model.safetensors, metrics.json, ...) are the
    same for every run, so another run's files there would be replaced without a word."""
    if dest.exists() and not dest.is_dir():
        raise CloudftError(f"--dest {dest} is a file, not a directory", hint="choose a directory")
    existing = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir()) if dest.is_dir() else []
    if existing:
        more = f" and {len(existing) - shown} more" if len(existing) > shown else ""
        raise CloudftError(f"--dest {dest} already holds {len(existing)} file(s) that the artifacts could replace: "
                           f"{', '.join(existing[:shown])}{more}",
                           hint="choose a new or empty directory, or add --overwrite to write over them")


@click.command("report")
@click.argument("run_id")
def report_cmd(run_id: str) -> None:
    """Print where RUN's evaluation report is, and its headline numbers."""
    prov, rec = _record(run_id)
    out_dir = prov.artifacts(rec)
    report = Path(out_dir) / "report.md"
    if not report.exists():
        raise CloudftError(f"no report in {out_dir}", hint="reports are written when a run completes")
    console().print(str(report))
    metrics = Path(out_dir) / "metrics.json"
    if metrics.exists():
        for line in headline(json.loads(metrics.read_text())):
            console().print(f"  {line}")
