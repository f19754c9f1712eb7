"""`stack_outputs(provider, stack)`: the contract keys of a cloudft stack as plain values, for `--stack NAME`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..errors import CloudftError
from .contract import OUTPUT_KEYS

SECRET_PLACEHOLDER = "[secret]"


def stack_outputs(provider: str, stack: str, *, infra_dir: Optional[str] = None) -> dict[str, Any]:
    """The outputs of a cloudft stack for `provider` ("aws" | "azure"), limited to the contract keys
    (`cloudft.infra.contract.OUTPUT_KEYS`), with empty values (None, "", []) dropped so spec defaults apply.

    `stack` is either the path of a JSON file of outputs (`pulumi stack output --json > outputs.json`; works
    offline) or a Pulumi stack name read through the Automation API (needs the Pulumi CLI). Secret outputs are
    unwrapped in memory only: never log or print the result wholesale.
    """
    if provider not in OUTPUT_KEYS:
        raise CloudftError(f"unknown provider {provider!r} for stack outputs",
                           hint=f"use one of: {', '.join(OUTPUT_KEYS)}")
    path = Path(stack).expanduser()
    if path.suffix.lower() == ".json" or path.is_file():
        raw = load_outputs_file(path)
    else:
        from .workspace import read_outputs

        raw = {k: v for k, (v, _secret) in read_outputs(provider, stack, infra_dir=infra_dir).items()}
    return select_contract(provider, raw, source=str(stack))


def load_outputs_file(path: Path) -> dict[str, Any]:
    """Outputs from `pulumi stack output --json` (a flat JSON object)."""
    if not path.is_file():
        raise CloudftError(f"stack outputs file {path} does not exist",
                           hint="write it with `pulumi stack output --json > outputs.json`, or pass a stack name")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CloudftError(f"{path} is not valid JSON: {exc}",
                           hint="write it with `pulumi stack output --json > outputs.json`") from None
    if not isinstance(data, dict):
        raise CloudftError(f"{path} must hold a JSON object of stack outputs, not {type(data).__name__}")
    return data


def select_contract(provider: str, raw: dict[str, Any], *, source: str = "stack") -> dict[str, Any]:
    """Keep the contract keys of `provider` with a value; refuse masked secrets (`[secret]`)."""
    out: dict[str, Any] = {}
    for key in OUTPUT_KEYS[provider]:
        value = raw.get(key)
        if isinstance(value, dict) and set(value) <= {"value", "secret"} and "value" in value:
            value = value["value"]  # {"value": ..., "secret": ...} as some tools write it
        if value == SECRET_PLACEHOLDER:
            raise CloudftError(f"stack output {key!r} in {source} is a masked secret",
                               hint="pass the stack name instead of a JSON file, or export with "
                                    "`pulumi stack output --json --show-secrets` to a file only you can read")
        if value is None or value == "" or value == []:
            continue
        out[key] = value
    return out
