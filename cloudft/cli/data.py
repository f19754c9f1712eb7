"""`cloudft data validate | prepare | stats`: check, normalise and describe datasets.

Each command takes data files, or one job spec (.yaml/.yml): then every stage's data is checked with the
spec's own settings (format, columns, method, max_length, tokenizer, validation split).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

import click

from train_entry.config import is_remote

from ..errors import CloudftError
from .output import console, print_json

SHOWN_PROBLEMS = 20


def parse_columns(value: Optional[str]) -> Optional[dict[str, Any]]:
    """'prompt=question,chosen=response_j' or a JSON object → {format name: column, template or label value}."""
    if not value:
        return None
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise CloudftError(f"--columns: invalid JSON ({str(exc)[:80]})",
                               hint='e.g. --columns \'{"prompt": "{instruction}\\n\\n{input}"}\'') from None
        if not isinstance(data, dict):
            raise CloudftError("--columns: give a JSON object", hint='e.g. --columns \'{"prompt": "q"}\'')
        return {str(k): v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in data.items()}
    out = {}
    for part in value.split(","):
        key, sep, col = part.partition("=")
        if not sep or not key.strip() or not col.strip():
            raise CloudftError(f"--columns: '{part}' is not canonical=column", hint="e.g. --columns prompt=question")
        out[key.strip()] = col.strip()
    return out


def _format_names() -> list[str]:
    from train_entry.config import DataFormat

    return [f.value for f in DataFormat]


def common_options(fn):
    """Options shared by validate, prepare and stats (file mode; a spec sets them itself)."""
    opts = [
        click.option("--format", "fmt", default="auto", show_default=True, type=click.Choice(_format_names()),
                     help="Source format (files only; docs/data.md lists them)."),
        click.option("--columns", default=None,
                     help="Column mapping: prompt=question,chosen=response_j,... or JSON (templates: "
                          '\'{"prompt": "{instruction}\\n\\n{input}"}\').'),
        click.option("--ignore-columns", "ignore_columns", default=None,
                     help="Columns to leave out on purpose, comma-separated (not reported, never refused)."),
        click.option("--method", default="any", show_default=True,
                     type=click.Choice(["any", "sft", "dpo", "orpo", "kto", "reward", "rl"]),
                     help="What the data trains (decides the expected kind); 'any' accepts every kind."),
        click.option("--tokenizer", "tokenizer_dir", default=None, type=click.Path(file_okay=False),
                     help="Model directory with tokenizer.json, for token lengths."),
        click.option("--max-length", type=int, default=None, help="Reject records longer than this (tokens)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _is_spec(paths: tuple[str, ...]) -> bool:
    return len(paths) == 1 and paths[0].lower().endswith((".yaml", ".yml"))


def _file_options(fmt: str, columns: Optional[str], method: str, tokenizer_dir: Optional[str],
                  max_length: Optional[int], ignore_columns: Optional[str] = None, **extra: Any):
    from ..data.pipeline import Options
    from ..data.tokens import TokenCounter

    counter, note = (TokenCounter.for_model(tokenizer_dir) if tokenizer_dir
                     else (None, "skipped: no --tokenizer given, token lengths not checked"))
    if tokenizer_dir and counter is None:
        raise CloudftError(f"--tokenizer {tokenizer_dir}: no tokenizer.json there",
                           hint="point --tokenizer at a model directory that has tokenizer.json")
    if max_length and counter is None:
        note += f" (only records over {max_length} x 64 characters are rejected as too long)"
    ignore = tuple(c.strip() for c in (ignore_columns or "").split(",") if c.strip())
    return Options(format=fmt, columns=parse_columns(columns), method=method, max_length=max_length, counter=counter,
                   tokenizer_note=note, ignore=ignore, **extra)


def _jobs(paths: tuple[str, ...], validation: Optional[str], file_opts: dict[str, Any], extra: dict[str, Any]):
    """(label, sources, options) per stage of a spec, or one job for the given files."""
    if _is_spec(paths):
        from ..data.resolve import _local, stage_options
        from ..spec import load_spec

        spec = load_spec(paths[0])
        jobs = []
        for i, stage in enumerate(spec.stage_list()):
            data = stage.data or spec.data
            if is_remote(data.train):
                continue
            opts = stage_options(spec, i, data)
            for key, value in extra.items():
                if value is not None and not (key == "near_dup" and opts.near_dup):
                    setattr(opts, key, value)
            sources = [(_local(spec, data.train, "train"), "train")]
            if data.validation and not is_remote(data.validation):
                sources.append((_local(spec, data.validation, "validation"), "validation"))
            jobs.append((f"stage {i} ({stage.method})", sources, opts))
        return jobs
    sources = [(Path(p), "train") for p in paths]
    if validation:
        sources.append((Path(validation), "validation"))
    extra = {k: v for k, v in extra.items() if v is not None}
    return [(", ".join(paths), sources, _file_options(**file_opts, **extra))]


def _render(label: str, summary) -> None:
    from rich.markup import escape

    out = console()
    s = summary
    colour = "red" if s.errors else ("yellow" if s.problem_total else "green")
    splits = ", ".join(f"{k} {v}" for k, v in sorted(s.splits.items())) or "none"
    out.print(f"[bold]{label}[/]: {s.format or 'unknown format'}; records in {s.records_in} = out {s.records_out} "
              f"({splits}) + quarantined {s.quarantined}  [{colour}]{s.errors} errors[/]")
    for line in s.count_lines():
        out.print(f"  {line}")
    for p in s.problems[:SHOWN_PROBLEMS]:
        out.print(f"  [dim]{escape(p.render())}[/]")
    if s.problem_total > SHOWN_PROBLEMS:
        out.print(f"  ... {s.problem_total - SHOWN_PROBLEMS} more (--json lists them)")
    if s.quarantine:
        out.print(f"  quarantine: {s.quarantine}")
    out.print(f"  token lengths: {s.tokenizer}")
    for w in s.warnings:
        out.print(f"[yellow]warning:[/] {escape(w)}")


def _finish(results: list[dict[str, Any]], as_json: bool, strict: bool, fail_on_errors: bool) -> None:
    if as_json:
        print_json(results[0] if len(results) == 1 else results)
    failed = any(r.get("error") or (r["problems_total"] if strict else (r["errors"] and fail_on_errors))
                 for r in results)
    if failed:
        if not as_json:
            why = "problems found (--strict)" if strict else "records with errors"
            console().print(f"[red]failed:[/] {why}")
        raise SystemExit(1)


@click.group("data")
def data_group() -> None:
    """Validate, prepare and describe datasets (files, or the data of a job spec)."""


@data_group.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@common_options
@click.option("--validation", default=None, type=click.Path(dir_okay=False), help="Validation file (files only).")
@click.option("--quarantine", default=None, type=click.Path(dir_okay=False),
              help="Write rejected records here, each with its reason.")
@click.option("--pii", is_flag=True, help="Warn about e-mails, phone numbers and credentials.")
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable summary.")
@click.option("--strict", is_flag=True, help="Fail on any problem (also duplicates and warnings).")
def validate_cmd(paths: tuple[str, ...], fmt: str, columns: Optional[str], ignore_columns: Optional[str],
                 method: str, tokenizer_dir: Optional[str], max_length: Optional[int], validation: Optional[str],
                 quarantine: Optional[str], pii: bool, as_json: bool, strict: bool) -> None:
    """Check data files (or a spec's data): every problem with file, line, field, reason and fix.

    Several PATHS form one dataset (same format); check files of different kinds in separate calls.
    Exits 1 when a record has errors or a file is refused (with --strict: on any problem). With --json the
    summary is always printed; a refused file's summary has `error` {message, hint}."""
    from ..data.store import validate_files

    file_opts = dict(fmt=fmt, columns=columns, method=method, tokenizer_dir=tokenizer_dir, max_length=max_length,
                     ignore_columns=ignore_columns)
    results = []
    try:
        jobs = _jobs(paths, validation, file_opts, {"pii": pii or None})
    except CloudftError as exc:
        if not as_json:
            raise
        jobs, results = [], [_refused(exc)]
    for n, (label, sources, opts) in enumerate(jobs):
        qpath = Path(quarantine) if quarantine else None
        if qpath and len(jobs) > 1:
            qpath = qpath.with_name(f"{qpath.stem}-stage{n}{qpath.suffix}")
        try:
            summary = validate_files(sources, opts, qpath)
        except CloudftError as exc:
            if not as_json:
                raise
            results.append(_refused(exc, label))
            continue
        if not as_json:
            _render(label, summary)
        results.append(summary.to_dict())
    _finish(results, as_json, strict, fail_on_errors=True)


def _refused(exc: CloudftError, label: Optional[str] = None) -> dict[str, Any]:
    """The --json summary of a dataset that was refused as a whole (unreadable format, empty file, ...)."""
    from ..data.problems import Summary

    partial = getattr(exc, "summary", None)
    out = partial.to_dict() if partial is not None else Summary().to_dict()
    if label:
        out["source"] = label
    out["error"] = {"message": exc.message, "hint": exc.hint}
    out["errors"] = max(out["errors"], 1)
    return out


@data_group.command("prepare")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@common_options
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Write here (default: the content-addressed store under $CLOUDFT_HOME/datasets).")
@click.option("--validation", default=None, type=click.Path(dir_okay=False), help="Validation file (files only).")
@click.option("--validation-split", type=float, default=None, help="Hold out this fraction by hash (files only).")
@click.option("--test-split", type=float, default=None, help="Also hold out a test split by hash.")
@click.option("--near-dup", type=float, default=0.9, show_default=True,
              help="MinHash near-duplicate threshold (Jaccard); 0 turns it off. A spec's setting wins.")
@click.option("--pii", is_flag=True, help="Warn about e-mails, phone numbers and credentials.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (with its validation summary) as JSON.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) on any problem; with --out, nothing is left behind.")
def prepare_cmd(paths: tuple[str, ...], fmt: str, columns: Optional[str], ignore_columns: Optional[str],
                method: str, tokenizer_dir: Optional[str], max_length: Optional[int], out_dir: Optional[str],
                validation: Optional[str], validation_split: Optional[float], test_split: Optional[float],
                near_dup: float, pii: bool, as_json: bool, strict: bool) -> None:
    """Normalise to canonical JSONL, dedupe (exact + near), split by hash, check leakage, and version it."""
    from ..data.store import prepare_files, prepare_into_store

    for frac, name in ((validation_split, "--validation-split"), (test_split, "--test-split")):
        if frac is not None and not 0 <= frac < 0.5:
            raise CloudftError(f"{name} {frac}: must be at least 0 and below 0.5", hint=f"e.g. {name} 0.1")
    holdout = {k: v for k, v in (("validation", validation_split), ("test", test_split)) if v}
    if validation and validation_split:
        raise CloudftError("give --validation or --validation-split, not both", hint="drop one of them")
    if not 0 <= near_dup <= 1:
        raise CloudftError(f"--near-dup {near_dup}: a Jaccard similarity in [0, 1] (0 turns it off)",
                           hint="e.g. --near-dup 0.9")
    file_opts = dict(fmt=fmt, columns=columns, method=method, tokenizer_dir=tokenizer_dir, max_length=max_length,
                     ignore_columns=ignore_columns)
    extra = {"near_dup": near_dup or None, "pii": pii or None, "holdout": holdout or None}
    jobs = _jobs(paths, validation, file_opts, extra)
    results = []
    for n, (label, sources, opts) in enumerate(jobs):
        if out_dir:
            target = Path(out_dir) / f"stage{n}" if len(jobs) > 1 else Path(out_dir)
            summary, manifest = prepare_files(sources, opts, target)
        else:
            summary, manifest, target = prepare_into_store(sources, opts)
        if strict and summary.problem_total:
            if out_dir:
                shutil.rmtree(target, ignore_errors=True)
        if not as_json:
            _render(label, summary)
            console().print(f"  dataset {manifest['version'][:16]} → {target}")
        results.append({**summary.to_dict(), "manifest": manifest, "dataset_dir": str(target)})
    _finish(results, as_json, strict, fail_on_errors=False)


@data_group.command("stats")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@common_options
@click.option("--png", "png", default=None, type=click.Path(dir_okay=False), help="Write the length histogram here.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats_cmd(paths: tuple[str, ...], fmt: str, columns: Optional[str], ignore_columns: Optional[str], method: str,
              tokenizer_dir: Optional[str], max_length: Optional[int], png: Optional[str], as_json: bool) -> None:
    """Counts, token-length percentiles (real tokenizer), length histogram, roles/turns, label balance.

    PATHS: data files, a prepared dataset directory (with manifest.json), or a job spec."""
    from ..data.pipeline import Pipeline
    from ..data.stats import StatsCollector

    file_opts = dict(fmt=fmt, columns=columns, method=method, tokenizer_dir=tokenizer_dir, max_length=max_length,
                     ignore_columns=ignore_columns)
    if len(paths) == 1 and (Path(paths[0]) / "manifest.json").is_file():
        manifest = json.loads((Path(paths[0]) / "manifest.json").read_text())
        file_opts["fmt"] = manifest["format"]
        sources_override = [(Path(paths[0]) / s["file"], name) for name, s in manifest["splits"].items()]
        jobs = [(paths[0], sources_override, _file_options(**file_opts))]
    else:
        jobs = _jobs(paths, None, file_opts, {})
    results = []
    for n, (label, sources, opts) in enumerate(jobs):
        if not _is_spec(paths):
            opts.method = "any"  # describe whatever the file holds
        stats = StatsCollector(opts.counter)
        pipe = Pipeline(opts, roles=[role for _, role in sources])
        splits: dict[str, int] = {}
        for path, role in sources:
            for out in pipe.run(path, role if role != "test" else "validation"):
                splits[role] = splits.get(role, 0) + 1
                stats.add(out.record)
        summary = pipe.finish()
        result = {"source": label, "format": summary.format, "splits": splits, **stats.result(),
                  "tokenizer": opts.tokenizer_note, "quarantined": summary.quarantined}
        if png:
            target = Path(png) if len(jobs) == 1 else Path(png).with_name(f"{Path(png).stem}-stage{n}.png")
            result["histogram"] = str(stats.histogram(target, title=f"{label}: {stats.records} records"))
        results.append(result)
        if not as_json:
            _render_stats(result)
    if as_json:
        print_json(results[0] if len(results) == 1 else results)


def _render_stats(result: dict[str, Any]) -> None:
    out = console()
    splits = ", ".join(f"{k} {v}" for k, v in result["splits"].items())
    out.print(f"[bold]{result['source']}[/]: {result['format']}, {result['records']} records ({splits})"
              + (f" ({result['quarantined']} unusable, see data validate)" if result["quarantined"] else ""))
    length = result.get("length") or {}
    out.print(f"  length ({result['length_unit']}): " + ", ".join(f"{k} {v}" for k, v in length.items()))
    for key in ("roles", "user_turns", "labels", "desirable_fraction", "pairs", "chosen_longer_fraction",
                "histogram"):
        if key in result:
            out.print(f"  {key}: {result[key]}")
    out.print(f"  tokenizer: {result['tokenizer']}")
