"""cloudft's entry script inside a SageMaker training container (the `code` channel's entry_script).

1. Resolves secrets: `CLOUDFT_SECRET_REFS` holds `{"ENV_NAME": "<Secrets Manager ARN or name>"}`
   (references only, never values); each value is fetched with the job's role and put into the
   environment of this process. Values never reach hyperparameters, logs or files.
2. Runs `python -m train_entry --config run.json [args...]` in this same process (so torchrun's
   RANK/LOCAL_RANK/WORLD_SIZE stay as the launcher set them). Extra command-line args pass through.

Stdlib + boto3 only (boto3 ships in the AWS/Hugging Face training images).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFS_ENV = "CLOUDFT_SECRET_REFS"


def secret_id(ref: str) -> str:
    """`secretsmanager:NAME` → NAME; an ARN stays as it is."""
    return ref.split(":", 1)[1] if ref.startswith("secretsmanager:") else ref


def resolve_secrets(environ=os.environ) -> list[str]:
    """Fetch every referenced secret into `environ`; returns the names set (values are never printed)."""
    refs = json.loads(environ.pop(REFS_ENV, "") or "{}")
    names = [n for n in refs if not environ.get(n)]
    if not names:
        return []
    import boto3

    client = boto3.client("secretsmanager")
    for name in names:
        value = client.get_secret_value(SecretId=secret_id(refs[name]))
        environ[name] = value.get("SecretString") or value["SecretBinary"].decode()
    return names


def main(argv: list[str]) -> None:
    names = resolve_secrets()
    if names:
        print(f"cloudft: resolved secret(s) {', '.join(names)} from Secrets Manager", flush=True)
    if "--config" not in argv:
        argv = ["--config", str(HERE / "run.json"), *argv]
    sys.path.insert(0, str(HERE))
    sys.argv = ["train_entry", *argv]
    runpy.run_module("train_entry", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
