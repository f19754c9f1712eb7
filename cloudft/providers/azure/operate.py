"""status / logs / stop / artifacts of an Azure ML run, through `MLClient.jobs`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ...errors import CloudftError
from ...registry import Registry
from .entities import AZURE_STATUS
from .handle import AzureHandle

if TYPE_CHECKING:
    from ...registry import RunRecord

#: log files train_entry's output lands in (per process on multi-process jobs), oldest layout last
USER_LOGS = ("user_logs/std_log", "azureml-logs/70_driver_log")


def _job_name(run: "RunRecord") -> str:
    if not run.external_id:
        raise CloudftError(f"run {run.run_id} has no Azure ML job name", hint="was it submitted with --dry-run?")
    return run.external_id


def refresh(ml: Any, run: "RunRecord") -> "RunRecord":
    """Ask Azure ML for the job's status and store it in the registry."""
    if run.finished:
        return run
    job = ml.jobs.get(_job_name(run))
    status = AZURE_STATUS.get(job.status or "", "running")
    meta = {"azure_status": job.status}
    services = getattr(job, "services", None) or {}
    if services.get("Studio") is not None:
        meta["studio_url"] = services["Studio"].endpoint
    return Registry().update(run.run_id, status=status, meta=meta)


def cancel(ml: Any, run: "RunRecord") -> "RunRecord":
    """Cancel the job (Azure ML sends SIGTERM; train_entry checkpoints, then exits 143)."""
    if run.finished:
        return run
    ml.jobs.begin_cancel(_job_name(run)).result()
    return Registry().update(run.run_id, status="stopped", meta={"azure_status": "CancelRequested"})


def _jobs_with_logs(ml: Any, run: "RunRecord") -> list[str]:
    """The job itself, or a pipeline's step jobs in stage order."""
    name = _job_name(run)
    if AzureHandle.model_validate(run.handle).job_type != "pipeline":
        return [name]
    children = list(ml.jobs.list(parent_job_name=name))
    children.sort(key=lambda j: (j.display_name or j.name or ""))
    return [c.name for c in children]


def _log_urls(ml: Any, job_name: str) -> dict[str, str]:
    details = ml.jobs._runs_operations.get_run_details(job_name)
    files = details.log_files or {}
    picked = {k: v for k, v in files.items() if k.startswith(USER_LOGS)}
    # multi-process jobs: rank 0 carries the events; other ranks mostly repeat it
    rank0 = {k: v for k, v in picked.items() if "process_0" in k or "process" not in k}
    return dict(sorted((rank0 or picked).items()))


def _read(ml: Any, url: str) -> str:
    from azure.ai.ml._utils.utils import download_text_from_url

    return download_text_from_url(url, ml.jobs._requests_pipeline, timeout=(10, 60))


def stream_logs(ml: Any, run: "RunRecord", follow: bool = False, poll_s: float = 15.0) -> Iterator[str]:
    """Yield new lines of the job's user logs; with `follow`, poll until the run reaches a terminal status."""
    seen: dict[tuple[str, str], int] = {}
    while True:
        run = refresh(ml, run) if follow else run
        for job in _jobs_with_logs(ml, run):
            for name, url in _log_urls(ml, job).items():
                text = _read(ml, url)
                start = seen.get((job, name), 0)
                new = text[start:]
                cut = new.rfind("\n") + 1 if not run.finished else len(new)  # hold back a partial last line
                for line in new[:cut].splitlines():
                    yield line
                seen[(job, name)] = start + cut
        if not follow or run.finished:
            return
        time.sleep(poll_s)


def download(ml: Any, run: "RunRecord", dest: Optional[Path] = None) -> Path:
    """Download the final adapter (the last stage's `adapter` output) and return its folder."""
    from ...paths import home

    run = refresh(ml, run)
    if not run.finished:
        raise CloudftError(f"run {run.run_id} is {run.status}; outputs can be downloaded once it has finished",
                           hint=f"cloudft logs {run.run_id} --follow")
    dest = Path(dest) if dest else home() / "azure" / run.run_id / "artifacts"
    dest.mkdir(parents=True, exist_ok=True)
    ml.jobs.download(_job_name(run), download_path=str(dest), output_name="adapter")
    out = dest / "named-outputs" / "adapter"
    return out if out.exists() else dest
