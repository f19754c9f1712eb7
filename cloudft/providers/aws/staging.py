"""What goes to S3 before a job starts: dataset files (by content version) and the stage's source dir."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ...paths import templates_dir

if TYPE_CHECKING:
    from train_entry.config import RunConfig

LAUNCHER = "cloudft_launch.py"
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


def train_entry_dir() -> Path:
    """The train_entry package shipped with this cloudft."""
    import train_entry.config  # the package may resolve as a namespace path in editable installs

    return Path(train_entry.config.__file__).resolve().parent


def stage_source_dir(dest: Path, run_config: "RunConfig", with_requirements: bool) -> Path:
    """Lay out the `code` channel: train_entry/, run.json, the launcher and (for the HF image) requirements.txt.

    In the container this is /opt/ml/input/data/code; the launcher runs
    `python -m train_entry --config run.json` there.
    """
    dest.mkdir(parents=True, exist_ok=True)
    src = train_entry_dir()
    shutil.copytree(src, dest / "train_entry", ignore=_IGNORE, dirs_exist_ok=True)
    run_config.write(dest / "run.json")
    shutil.copy2(TEMPLATES / LAUNCHER, dest / LAUNCHER)
    req: Optional[Path] = src / "requirements.txt"
    if with_requirements and req is not None and req.exists():
        shutil.copy2(req, dest / "requirements.txt")
    return dest
