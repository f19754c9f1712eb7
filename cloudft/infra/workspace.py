"""Preview, update, destroy and read a cloudft stack through the Pulumi Automation API (`LocalWorkspace`).

The Pulumi projects live in `infra/aws` and `infra/azure`; each stack's configuration is `Pulumi.<stack>.yaml` there.
State goes where the Pulumi CLI is logged in (`PULUMI_BACKEND_URL`, e.g. `s3://...`, `azblob://...`, `file://...`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import CloudftError
from .contract import PROVIDERS
from .pulumi_cli import PulumiCliMissing, find_pulumi_root

OnOutput = Callable[[str], None]
REPO_ROOT = Path(__file__).resolve().parents[2]


def infra_root(infra_dir: Optional[str] = None) -> Path:
    """Where the Pulumi projects are: `infra_dir`, $CLOUDFT_INFRA_DIR, ./infra, or the repository's infra/."""
    for candidate in (infra_dir, os.environ.get("CLOUDFT_INFRA_DIR"), Path.cwd() / "infra", REPO_ROOT / "infra"):
        if candidate and (Path(candidate) / "aws" / "Pulumi.yaml").is_file():
            return Path(candidate)
    raise CloudftError("cannot find cloudft's Pulumi projects (infra/aws/Pulumi.yaml)",
                       hint="run from the cloudft repository, or pass --infra-dir / set CLOUDFT_INFRA_DIR")


def project_dir(provider: str, infra_dir: Optional[str] = None) -> Path:
    """The Pulumi project folder of `provider` (`infra/aws` or `infra/azure`)."""
    if provider not in PROVIDERS:
        raise CloudftError(f"unknown infrastructure provider {provider!r}", hint=f"use one of: {', '.join(PROVIDERS)}")
    return infra_root(infra_dir) / provider


def open_stack(provider: str, stack: str, *, create: bool = False, infra_dir: Optional[str] = None):
    """The Automation API stack `stack` of `provider`'s project (created when `create` and missing)."""
    work_dir = project_dir(provider, infra_dir)
    root = find_pulumi_root()
    from pulumi import automation as auto

    try:
        opts = auto.LocalWorkspaceOptions(work_dir=str(work_dir),
                                          pulumi_command=auto.PulumiCommand(root=root) if root else None)
        if create:
            return auto.create_or_select_stack(stack_name=stack, work_dir=str(work_dir), opts=opts)
        return auto.select_stack(stack_name=stack, work_dir=str(work_dir), opts=opts)
    except FileNotFoundError as exc:
        if "pulumi" in str(exc):
            raise PulumiCliMissing() from None
        raise
    except auto.errors.StackNotFoundError:
        raise CloudftError(f"no Pulumi stack {stack!r} in {work_dir}",
                           hint=f"create it with `cloudft infra up --provider {provider} --stack {stack}`, "
                                "or check `pulumi stack ls` / PULUMI_BACKEND_URL") from None
    except auto.errors.CommandError as exc:
        raise _command_error(exc, f"cannot open stack {stack!r}") from None


def _command_error(exc: Exception, what: str) -> CloudftError:
    # CommandError's text is "code: N\n stdout: ...\n stderr: ...": show the tail of stderr (else everything).
    text = str(exc)
    stderr = text.split("\n stderr: ", 1)[1] if "\n stderr: " in text else text
    detail = "\n".join(stderr.strip().splitlines()[-15:])
    return CloudftError(f"{what}:\n{detail}", hint="read the Pulumi output above; `pulumi login` selects the state "
                                                   "backend, PULUMI_CONFIG_PASSPHRASE unlocks file/s3/azblob state")


def run_operation(provider: str, stack: str, operation: str, *, on_output: Optional[OnOutput] = print,
                  policy_packs: Optional[list[str]] = None, infra_dir: Optional[str] = None) -> Any:
    """Run `preview`, `up` or `destroy` on a stack; returns the Automation API result (summary, outputs)."""
    if operation not in ("preview", "up", "destroy"):
        raise ValueError(operation)
    st = open_stack(provider, stack, create=operation != "destroy", infra_dir=infra_dir)
    from pulumi import automation as auto

    kwargs: dict[str, Any] = {"on_output": on_output}
    if policy_packs and operation != "destroy":
        kwargs["policy_packs"] = policy_packs
    try:
        return getattr(st, operation)(**kwargs)
    except auto.errors.ConcurrentUpdateError:
        raise CloudftError(f"stack {stack!r} is being updated by someone else",
                           hint=f"wait, or run `pulumi cancel --stack {stack}` in {project_dir(provider, infra_dir)}"
                           ) from None
    except auto.errors.CommandError as exc:
        raise _command_error(exc, f"pulumi {operation} failed for stack {stack!r}") from None


def read_outputs(provider: str, stack: str, *, infra_dir: Optional[str] = None) -> dict[str, tuple[Any, bool]]:
    """A stack's outputs as {key: (value, is_secret)}; secret values stay in memory."""
    st = open_stack(provider, stack, infra_dir=infra_dir)
    from pulumi import automation as auto

    try:
        return {k: (v.value, bool(v.secret)) for k, v in st.outputs().items()}
    except auto.errors.CommandError as exc:
        raise _command_error(exc, f"cannot read the outputs of stack {stack!r}") from None


def policy_pack_dir(infra_dir: Optional[str] = None) -> Path:
    """cloudft's pulumi-policy pack (`infra/policy`)."""
    return infra_root(infra_dir) / "policy"
