"""cloudft's entry script inside a SageMaker training container (the `code` channel's entry_script).

1. Resolves secrets: `CLOUDFT_SECRET_REFS` holds `{"ENV_NAME": "<Secrets Manager ARN or name>[:json_key]"}`
   (references only, never values); each value is fetched with the job's role and put into the
   environment of this process. A key/value secret (the console's default: a JSON object) gives the
   value of `json_key`, or of its only key when no key is named. Values never reach hyperparameters,
   logs or files.
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


def parse_ref(ref: str) -> "tuple[str, str | None]":
    """(SecretId, json_key or None) of a reference: `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf`
    or `secretsmanager:NAME`, either optionally followed by `:json_key` (Secrets Manager names and ARNs have no
    other colon: the secret ARN has exactly 7 fields). Raises ValueError for anything else."""
    if ref.startswith("arn:"):
        parts = ref.split(":")
        if len(parts) not in (7, 8) or parts[2] != "secretsmanager" or parts[5] != "secret" or not parts[6]:
            raise ValueError("expected arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:json_key]")
        return ":".join(parts[:7]), (parts[7] or None) if len(parts) == 8 else None
    if ref.startswith("secretsmanager:"):
        name, _, key = ref[len("secretsmanager:"):].partition(":")
        if not name or ":" in key:
            raise ValueError("expected secretsmanager:NAME[:json_key]")
        return name, key or None
    raise ValueError("not a Secrets Manager reference (arn:aws:secretsmanager:... or secretsmanager:NAME)")


def secret_id(ref: str) -> str:
    """The SecretId part of a reference (see parse_ref)."""
    return parse_ref(ref)[0]


def secret_value(env_name: str, secret: str, json_key: "str | None") -> str:
    """The value to export: the string itself, or one key of a key/value (JSON object) secret. Errors name the
    keys, never the values."""
    if json_key is None:
        if not secret.lstrip().startswith("{"):
            return secret
        try:
            data = json.loads(secret)
        except ValueError:
            return secret  # a plain string that starts with "{"
        if isinstance(data, dict) and len(data) == 1:
            value = next(iter(data.values()))
            return value if isinstance(value, str) else json.dumps(value)
        if isinstance(data, dict):
            raise ValueError(f"{env_name}: the secret is a key/value secret with keys {sorted(data)}; name one "
                             f"in the reference (NAME:json_key)")
        return secret
    try:
        data = json.loads(secret)
    except ValueError:
        raise ValueError(f"{env_name}: the reference names key '{json_key}' but the secret is not JSON") from None
    if not isinstance(data, dict) or json_key not in data:
        keys = sorted(data) if isinstance(data, dict) else []
        raise ValueError(f"{env_name}: the secret has no key '{json_key}' (keys: {keys})")
    value = data[json_key]
    return value if isinstance(value, str) else json.dumps(value)


def resolve_secrets(environ=os.environ) -> list[str]:
    """Fetch every referenced secret into `environ`; returns the names set (values are never printed)."""
    refs = json.loads(environ.pop(REFS_ENV, "") or "{}")
    names = [n for n in refs if not environ.get(n)]
    if not names:
        return []
    import boto3

    client = boto3.client("secretsmanager")
    for name in names:
        sid, key = parse_ref(refs[name])
        value = client.get_secret_value(SecretId=sid)
        raw = value.get("SecretString") or value["SecretBinary"].decode()
        environ[name] = secret_value(name, raw, key)
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
