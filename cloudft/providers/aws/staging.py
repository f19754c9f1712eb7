"""What goes to S3 before a job starts: dataset files (by content version) and the stage's `code` channel."""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ...paths import templates_dir, train_entry_dir

if TYPE_CHECKING:
    from train_entry.config import RunConfig

LAUNCHER = "cloudft_launch.py"
DOWNLOADS = "requirements.txt"  # what sm_train.sh pip-installs at start (SourceCode.requirements)
TEMPLATES = templates_dir() / "aws"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")


def split_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/key → (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3 URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def upload_if_missing(s3_client, local: Path, uri: str, kms_key: Optional[str] = None) -> bool:
    """Upload `local` to `uri` with boto3's managed transfer unless an object of the same size is there.

    Dataset URIs contain the content version, so "present with the same size" means "same data".
    Returns True when it uploaded.
    """
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    try:
        head = s3_client.head_object(Bucket=bucket, Key=key)
        if int(head.get("ContentLength", -1)) == local.stat().st_size:
            return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    config = TransferConfig(multipart_threshold=64 * 1024 * 1024, max_concurrency=8)
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else None
    s3_client.upload_file(str(local), bucket, key, ExtraArgs=extra, Config=config)
    return True


def stage_source_dir(dest: Path, run_config: "RunConfig", wheelhouse: Optional[Path] = None,
                     downloads: Sequence[str] = ()) -> Path:
    """Lay out the `code` channel: train_entry/, run.json, the launcher, the wheelhouse's wheels (`wheelhouse/`, which
    the launcher installs without an index) and, only when something must still come from PyPI, a requirements.txt
    of exactly that (`downloads`, installed at start by the SDK's sm_train.sh; preflight
    `aws.image-downloads-at-start` warns, and refuses it where PyPI is out of reach).

    In the container this is /opt/ml/input/data/code; the launcher runs
    `python -m train_entry --config run.json` there.
    """
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(train_entry_dir(), dest / "train_entry", ignore=_IGNORE, dirs_exist_ok=True)
    run_config.write(dest / "run.json")
    shutil.copy2(TEMPLATES / LAUNCHER, dest / LAUNCHER)
    if wheelhouse is not None:
        folder = dest / launcher_module().WHEELHOUSE
        folder.mkdir(exist_ok=True)
        for wheel in sorted(wheelhouse.glob("*.whl")):
            shutil.copy2(wheel, folder / wheel.name)
    if downloads:
        (dest / DOWNLOADS).write_text("".join(f"{req}\n" for req in downloads))
    return dest


def tree_size(path: Path) -> tuple[int, int]:
    """(files, bytes) under `path`: what the SDK uploads as the code channel."""
    files = [f for f in path.rglob("*") if f.is_file()]
    return len(files), sum(f.stat().st_size for f in files)


@lru_cache(maxsize=1)
def launcher_module():
    """templates/aws/cloudft_launch.py as a module: its `parse_ref` is the one parser of secret references, its
    `unmet` the one comparison of requirements with what an image has (preflight here, the container there)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cloudft_aws_launch", TEMPLATES / LAUNCHER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
