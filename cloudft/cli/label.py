"""`cloudft label`: candidates → labeling app or Ground Truth → agreement report → DPO dataset."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Optional

import click

from ..errors import CloudftError
from .output import console, print_json


@click.group("label")
def label_group() -> None:
    """Human preference labeling: candidates, web app, Ground Truth, agreement, export.

    \b
      cloudft label candidates --prompts prompts.jsonl --model RUN_ID --out pairs.jsonl
      cloudft label pilot pairs.jsonl --annotators 3 --size 20
      cloudft label serve pairs.jsonl --annotators 5 --overlap 3
      cloudft label report --db pairs.labels.sqlite
      cloudft label export --db pairs.labels.sqlite --out data/prefs
      cloudft label import judgments.csv --db imported.sqlite --pairs pairs.jsonl
    """


def _default_db(pairs: str, suffix: str = "labels") -> Path:
    p = Path(pairs)
    return p.with_name(f"{p.stem}.{suffix}.sqlite")


# -- candidates -------------------------------------------------------------------------------------------
@label_group.command("candidates")
@click.option("--prompts", type=click.Path(dir_okay=False), default=None,
              help="JSONL with a 'prompt' per line (or a .txt, one prompt a line). Default: the spec's eval.prompts.")
@click.option("--model", "model_a", required=True, help="Run id, model directory or adapter directory.")
@click.option("--model-b", default=None, help="A second model: one answer from each (default: two samples of --model).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="pairs.jsonl", show_default=True)
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), default=None,
              help="Take prompts (eval.prompts) and max_new_tokens (eval.max_new_tokens) from this job spec.")
@click.option("--temperature", type=float, default=0.8, show_default=True)
@click.option("--top-p", type=float, default=0.95, show_default=True)
@click.option("--top-k", type=int, default=0, show_default=True)
@click.option("--max-new-tokens", type=int, default=None, help="Default: the spec's eval.max_new_tokens, else 128.")
@click.option("--seed", type=int, default=0, show_default=True)
def candidates_cmd(prompts: Optional[str], model_a: str, model_b: Optional[str], out_path: str,
                   spec_path: Optional[str], temperature: float, top_p: float, top_k: int,
                   max_new_tokens: Optional[int], seed: int) -> None:
    """Generate two answers per prompt and write a pairs file."""
    from ..label.candidates import Sampling, generate_pairs, load_prompts
    from ..label.pairs import write_jsonl

    spec = None
    if spec_path:
        from ..spec import load_spec

        spec = load_spec(spec_path)
    if prompts:
        plist = load_prompts(prompts)
    elif spec is not None and spec.eval.prompts:
        plist = [{"id": f"q-{i + 1}", "prompt": p} for i, p in enumerate(spec.eval.prompts)]
    else:
        raise CloudftError("no prompts", hint="pass --prompts FILE (or --spec with eval.prompts)")
    mnt = max_new_tokens or (spec.eval.max_new_tokens if spec is not None else 128)
    s = Sampling(temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=mnt, seed=seed)
    n = write_jsonl(generate_pairs(plist, model_a, model_b, s), out_path)
    console().print(f"wrote {n} pairs to [bold]{out_path}[/]; next: [cyan]cloudft label pilot {out_path}[/]")


# -- the web app ----------------------------------------------------------------------------------------------
def _run_app(pairs: list[dict], names: list[str], overlap: int, db: Path, host: str, port: int,
             guidelines: Optional[str], seed: int, exit_when_done: bool, extra_meta: Optional[dict] = None):
    import logging

    from ..label import project_template
    from ..label.app import create_app, serve
    from ..label.store import Store

    store = Store.open_or_create(db, pairs, names, overlap, seed=seed, extra_meta=extra_meta)
    gpath = Path(guidelines) if guidelines else project_template("labeling", "guidelines.md")
    if not gpath.exists():
        raise CloudftError(f"guidelines file {gpath} does not exist")
    app = create_app(store, gpath.read_text(encoding="utf-8"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    def ready(bound: int) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        click.echo(f"label store {db} ({len(pairs)} items, overlap {overlap}); guidelines {gpath}", err=True)
        for a in store.annotators():
            if a["token"]:
                click.echo(f"{a['name']}\thttp://{shown}:{bound}/a/{a['token']}/")
        click.get_text_stream("stdout").flush()
        click.echo(f"labels are saved as they arrive; Ctrl-C stops the server. Then: cloudft label report --db {db}",
                   err=True)

    try:
        serve(app, host, port, on_ready=ready, stop_when=(lambda: store.remaining() == 0) if exit_when_done else None)
    except OSError as exc:
        raise CloudftError(f"cannot listen on {host}:{port} ({exc.strerror})", hint="pick another --port") from None
    except KeyboardInterrupt:
        pass
    return store


APP_OPTIONS = [
    click.option("--annotators", "annotators", default="3", show_default=True,
                 help="How many annotators (a count) or their names (alice,bob,carol)."),
    click.option("--db", type=click.Path(dir_okay=False), default=None,
                 help="Label store (SQLite). Default: PAIRS' name with .labels.sqlite (.pilot.sqlite for pilot)."),
    click.option("--host", default="127.0.0.1", show_default=True),
    click.option("--port", type=int, default=8765, show_default=True, help="0 picks a free port."),
    click.option("--guidelines", type=click.Path(dir_okay=False), default=None,
                 help="Markdown guidelines (default: templates/labeling/guidelines.md)."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seeds assignment order and A/B swaps."),
]


def _app_options(fn):
    for opt in reversed(APP_OPTIONS):
        fn = opt(fn)
    return fn


@label_group.command("serve")
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(dir_okay=False))
@_app_options
@click.option("--overlap", type=int, default=None, help="Annotators per item (default: min(3, annotators)).")
@click.option("--exit-when-done", is_flag=True, help="Stop the server once every assigned item is labelled.")
def serve_cmd(pairs_path: str, annotators: str, db: Optional[str], host: str, port: int, guidelines: Optional[str],
              seed: int, overlap: Optional[int], exit_when_done: bool) -> None:
    """Serve the labeling app for PAIRS; prints one line per annotator: name and private URL."""
    from ..label.pairs import load_pairs
    from ..label.store import annotator_names

    names = annotator_names(annotators)
    pairs = load_pairs(pairs_path)
    k = overlap if overlap is not None else min(3, len(names))
    _run_app(pairs, names, k, Path(db) if db else _default_db(pairs_path), host, port, guidelines, seed,
             exit_when_done)


@label_group.command("pilot")
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(dir_okay=False))
@_app_options
@click.option("--size", type=int, default=20, show_default=True, help="Items in the pilot sample.")
def pilot_cmd(pairs_path: str, annotators: str, db: Optional[str], host: str, port: int, guidelines: Optional[str],
              seed: int, size: int) -> None:
    """Label a small random sample with every annotator on every item, then report agreement.

    Refine the guidelines until agreement is acceptable, then run `serve` on the full set.
    """
    from ..label.agreement import agreement_report, render_report
    from ..label.export import write_report
    from ..label.pairs import load_pairs
    from ..label.store import annotator_names

    if size < 1:
        raise CloudftError("--size must be at least 1")
    names = annotator_names(annotators)
    if len(names) < 2:
        raise CloudftError("a pilot needs at least 2 annotators to measure agreement", hint="--annotators 3")
    pairs = load_pairs(pairs_path)
    sample = random.Random(seed).sample(pairs, min(size, len(pairs)))
    dbp = Path(db) if db else _default_db(pairs_path, "pilot")
    store = _run_app(sample, names, len(names), dbp, host, port, guidelines, seed, True, {"pilot": "1"})
    labels = store.labels()
    if not labels:
        raise CloudftError("the pilot ended before any label was given")
    rep = agreement_report(labels)
    click.echo(render_report(rep))
    click.echo(f"report written to {write_report(rep, dbp.parent)}", err=True)


# -- report and export -----------------------------------------------------------------------------------------
STORE_OPT = click.option("--db", type=click.Path(dir_okay=False), required=True, help="The label store (SQLite).")
POLICY_OPTS = [
    click.option("--min-votes", type=int, default=1, show_default=True, help="Non-skip votes an item needs."),
    click.option("--min-agreement", type=float, default=0.5, show_default=True,
                 help="Share of non-skip votes the winner needs (a strict majority is always required)."),
]


def _policy(fn):
    for opt in reversed(POLICY_OPTS):
        fn = opt(fn)
    return fn


def _check_policy(min_votes: int, min_agreement: float) -> None:
    if min_votes < 1 or not 0 <= min_agreement <= 1:
        raise CloudftError("--min-votes must be >= 1 and --min-agreement within [0, 1]")


@label_group.command("report")
@STORE_OPT
@_policy
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write agreement.md/.json here (default: beside the store).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report_cmd(db: str, min_votes: int, min_agreement: float, out_dir: Optional[str], as_json: bool) -> None:
    """Agreement (percent, Cohen, Fleiss, Krippendorff; with and without ties), position bias, per-annotator
    figures and the items to review."""
    from ..label.agreement import agreement_report, render_report
    from ..label.export import write_report
    from ..label.store import Store

    _check_policy(min_votes, min_agreement)
    store = Store.open(db)
    labels = store.labels()
    if not labels:
        raise CloudftError(f"{db} holds no labels yet")
    rep = agreement_report(labels, min_votes=min_votes, min_agreement=min_agreement)
    path = write_report(rep, out_dir or Path(db).parent)
    if as_json:
        print_json(rep)
    else:
        text = render_report(rep)
        if sys.stdout.isatty():  # a terminal gets the Markdown rendered; pipes get it as written to the file
            from rich.markdown import Markdown

            console().print(Markdown(text))
        else:
            click.echo(text)
        click.echo(f"written to {path}", err=True)


@label_group.command("export")
@STORE_OPT
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Dataset directory.")
@click.option("--kto", is_flag=True, help="Also write KTO-style unpaired labels under OUT/kto.")
@click.option("--validation", type=float, default=0.0, show_default=True, help="Fraction held out for validation.")
@_policy
@click.option("--json", "as_json", is_flag=True)
def export_cmd(db: str, out_dir: str, kto: bool, validation: float, min_votes: int, min_agreement: float,
               as_json: bool) -> None:
    """Write the DPO dataset (prompt/chosen/rejected), versioned, with provenance, quarantine and report."""
    from ..label.export import export
    from ..label.store import Store

    _check_policy(min_votes, min_agreement)
    if not 0 <= validation < 1:
        raise CloudftError("--validation must be in [0, 1)")
    summary = export(Store.open(db), out_dir, kto=kto, min_votes=min_votes, min_agreement=min_agreement,
                     splits={"validation": validation} if validation else None)
    if as_json:
        print_json(summary)
        return
    m = summary["manifest"]
    console().print(f"wrote {summary['pairs']} preference pairs to [bold]{out_dir}[/] (version {m['version'][:12]}); "
                    f"{summary['quarantined']} items quarantined (see quarantine.jsonl)")


# -- labels from elsewhere ----------------------------------------------------------------------------------
def _codes(value: Optional[str], default: tuple) -> tuple:
    return default if value is None else tuple(c.strip() for c in value.split(","))


@label_group.command("import")
@click.argument("labels_path", metavar="FILE", type=click.Path(dir_okay=False, exists=True))
@click.option("--db", type=click.Path(dir_okay=False), required=True, help="Label store to import into (created).")
@click.option("--pairs", "pairs_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Pairs file with each pair's prompt and responses (else FILE's prompt/response_a/response_b).")
@click.option("--columns", default=None,
              help="Which columns are pair_id, annotator, label, prompt, response_a, response_b, swapped, seconds, "
                   "rationale: pair_id=question_id,annotator=judge,label=winner (common names are found alone).")
@click.option("--a-codes", default=None, help="Label values meaning A (response_a) is better (comma-separated).")
@click.option("--b-codes", default=None, help="Label values meaning B is better.")
@click.option("--tie-codes", default=None, help="Label values meaning a tie (e.g. tie,tie (bothbad)).")
@click.option("--skip-codes", default=None, help="Label values meaning no judgment (missing data).")
@click.option("--json", "as_json", is_flag=True)
def import_cmd(labels_path: str, db: str, pairs_path: Optional[str], columns: Optional[str], a_codes: Optional[str],
               b_codes: Optional[str], tie_codes: Optional[str], skip_codes: Optional[str], as_json: bool) -> None:
    """Import labels collected elsewhere (several annotators per pair, ties included) into a label store;
    then `report` and `export` as for labels from the app.

    FILE has one row per judgment (JSONL, JSON, CSV/TSV, Parquet). Default codes: A = a, model_a, 1, left;
    B = b, model_b, 2, right; tie = tie, tie (bothbad), both_bad, equal, draw; skip = skip, unsure, empty."""
    from ..label.importing import Codes, read_labels
    from ..label.store import Store
    from .data import parse_columns

    base = Codes()
    codes = Codes(a=_codes(a_codes, base.a), b=_codes(b_codes, base.b), tie=_codes(tie_codes, base.tie),
                  skip=_codes(skip_codes, base.skip))
    cols = parse_columns(columns)
    if cols and any(not isinstance(v, str) for v in cols.values()):
        raise CloudftError("--columns: give column names as text")
    pairs, labels, summary = read_labels(labels_path, columns=cols, codes=codes, pairs_path=pairs_path)
    Store(db).import_labels(pairs, labels, source=summary["source"], meta={"imported_from": labels_path})
    summary["db"] = db
    if as_json:
        print_json(summary)
        return
    ch = summary["choices"]
    console().print(f"imported {summary['labels']} labels from {summary['annotators']} annotators on "
                    f"{summary['pairs']} pairs (A {ch.get('a', 0)}, B {ch.get('b', 0)}, tie {ch.get('tie', 0)}, "
                    f"skip {ch.get('skip', 0)}; display order {summary['display_order']}) into [bold]{db}[/]; "
                    f"next: [cyan]cloudft label report --db {db}[/]")


# -- Ground Truth ---------------------------------------------------------------------------------------------
def _aws_clients(region: Optional[str]):
    from ..errors import require

    boto3 = require("boto3", "aws")
    session = boto3.session.Session(region_name=region)
    if not session.region_name:
        raise CloudftError("no AWS region", hint="pass --region or set AWS_REGION")
    return session.client("s3"), session.client("sagemaker"), session.region_name


@label_group.command("submit")
@click.argument("pairs_path", metavar="PAIRS", type=click.Path(dir_okay=False))
@click.option("--provider", "-p", type=click.Choice(["aws"]), required=True,
              help="Ground Truth is AWS only; on other providers use `cloudft label serve`.")
@click.option("--bucket", envvar="CLOUDFT_GT_BUCKET", required=True, help="S3 bucket for manifest, template, output.")
@click.option("--prefix", default="cloudft/labeling", show_default=True,
              help="Key prefix in the bucket; keep it under the infra stack's prefix (cloudft:prefix), the only "
                   "place its role and consolidation Lambda may use.")
@click.option("--role-arn", envvar="CLOUDFT_GT_ROLE_ARN", required=True, help="Labeling job execution role.")
@click.option("--workteam-arn", envvar="CLOUDFT_GT_WORKTEAM_ARN", required=True, help="Private workteam ARN.")
@click.option("--region", envvar="AWS_REGION", default=None)
@click.option("--job-name", default="", help="Default: cloudft-pref-<timestamp>.")
@click.option("--workers", type=int, default=3, show_default=True, help="Workers per pair (1-9).")
@click.option("--task-time-limit", type=int, default=1800, show_default=True, help="Seconds per task.")
@click.option("--task-lifetime", type=int, default=864000, show_default=True, help="Seconds a task stays available.")
@click.option("--pre-lambda-arn", default=None, help="Pre-annotation Lambda (default: AWS PRE-PassThrough).")
@click.option("--consolidation-lambda-arn", default=None,
              help="Consolidation Lambda: cloudft's (templates/ground_truth/consolidation) once deployed; "
                   "default: AWS ACS-PassThrough.")
@click.option("--template", "template_path", type=click.Path(dir_okay=False), default=None,
              help="Task template (default: templates/ground_truth/pairwise.liquid.html).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the A/B display swaps.")
@click.option("--dry-run", is_flag=True, help="Print the request and the uploads; send nothing.")
def submit_cmd(pairs_path: str, provider: str, bucket: str, prefix: str, role_arn: str, workteam_arn: str,
               region: Optional[str], job_name: str, workers: int, task_time_limit: int, task_lifetime: int,
               pre_lambda_arn: Optional[str], consolidation_lambda_arn: Optional[str], template_path: Optional[str],
               seed: int, dry_run: bool) -> None:
    """Create a SageMaker Ground Truth labeling job for PAIRS (accounts that already use Ground Truth)."""
    from ..label import groundtruth as gt
    from ..label import project_template
    from ..label.pairs import load_pairs

    pairs = load_pairs(pairs_path)
    template = Path(template_path) if template_path else project_template("ground_truth", gt.TEMPLATE_NAME)
    cfg = gt.JobConfig(bucket=bucket, role_arn=role_arn, workteam_arn=workteam_arn, region=region or "",
                       prefix=prefix, job_name=job_name, workers=workers, task_time_limit=task_time_limit,
                       task_lifetime=task_lifetime, pre_lambda_arn=pre_lambda_arn,
                       consolidation_lambda_arn=consolidation_lambda_arn, seed=seed)
    if dry_run:
        cfg.region = cfg.region or "us-east-1"
        print_json(gt.submit(pairs, cfg, template, dry_run=True))
        return
    s3, sm, cfg.region = _aws_clients(region)
    result = gt.submit(pairs, cfg, template, s3=s3, sagemaker=sm)
    console().print(f"created [bold]{result['LabelingJobArn']}[/] ({result['objects']} pairs); "
                    f"when it completes: [cyan]cloudft label collect {cfg.job_name} --region {cfg.region}[/]")


@label_group.command("collect")
@click.argument("job_name", metavar="JOB")
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Label store (default: JOB.labels.sqlite).")
@click.option("--region", envvar="AWS_REGION", default=None)
def collect_cmd(job_name: str, db: Optional[str], region: Optional[str]) -> None:
    """Read a finished Ground Truth job's labels into a label store (then `report` and `export` as usual)."""
    from ..label import groundtruth as gt
    from ..label.store import Store

    s3, sm, _ = _aws_clients(region)
    result = gt.collect(job_name, s3, sm)
    path = Path(db) if db else Path(f"{job_name}.labels.sqlite")
    n = Store(path).import_labels(result["pairs"], result["labels"], source="groundtruth",
                                  meta={"groundtruth_job": job_name})
    for problem in result["problems"]:
        click.echo(f"warning: {problem}", err=True)
    console().print(f"{job_name} ({result['status']}): {n} labels on {len(result['pairs'])} pairs into [bold]{path}[/]"
                    f"; next: [cyan]cloudft label report --db {path}[/]")
