"""`cloudft infra preview|up|destroy|outputs`: cloudft's Pulumi stacks through the Automation API."""

from __future__ import annotations

from typing import Any, Optional

import click

from ..errors import CloudftError
from .output import console, print_json

PROVIDER = click.option("--provider", "-p", type=click.Choice(["aws", "azure"]), required=True,
                        help="Which cloud's project: infra/aws or infra/azure.")
STACK = click.option("--stack", "-s", required=True,
                     help="Pulumi stack name (its settings: infra/<provider>/Pulumi.<stack>.yaml).")
INFRA_DIR = click.option("--infra-dir", type=click.Path(file_okay=False), default=None,
                         help="Folder holding the aws/ and azure/ Pulumi projects (default: ./infra).")
POLICY = click.option("--policy/--no-policy", default=False, show_default=True,
                      help="Enforce cloudft's security policy pack (infra/policy; needs pulumi-policy).")
YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


@click.group("infra")
def infra_group() -> None:
    """Provision cloud infrastructure with cloudft's Pulumi stacks (needs the Pulumi CLI).

    \b
    State goes to the backend `pulumi login` (or PULUMI_BACKEND_URL) names; file/s3/azblob backends need
    PULUMI_CONFIG_PASSPHRASE. Then `cloudft submit SPEC --provider aws --stack NAME` reads the stack's outputs.
    """


def _policy_packs(enabled: bool, infra_dir: Optional[str]) -> Optional[list[str]]:
    if not enabled:
        return None
    from ..infra.workspace import policy_pack_dir

    return [str(policy_pack_dir(infra_dir))]


def _summary(result: Any) -> None:
    summary = getattr(result, "summary", None)
    changes = getattr(summary, "resource_changes", None) or getattr(result, "change_summary", None)
    if changes:
        console().print("changes: " + ", ".join(f"{k} {v}" for k, v in sorted(changes.items())))


@infra_group.command("preview")
@PROVIDER
@STACK
@POLICY
@INFRA_DIR
def preview_cmd(provider: str, stack: str, policy: bool, infra_dir: Optional[str]) -> None:
    """Show what `up` would change (creates the stack if it does not exist)."""
    from ..infra.workspace import run_operation

    result = run_operation(provider, stack, "preview", policy_packs=_policy_packs(policy, infra_dir),
                           infra_dir=infra_dir)
    _summary(result)


@infra_group.command("up")
@PROVIDER
@STACK
@POLICY
@YES
@INFRA_DIR
def up_cmd(provider: str, stack: str, policy: bool, yes: bool, infra_dir: Optional[str]) -> None:
    """Create or update the stack's resources, then print its outputs."""
    if not yes:
        click.confirm(f"update stack {stack!r} on {provider} (run `cloudft infra preview` first to see the changes)?",
                      abort=True)
    from ..infra.workspace import run_operation

    result = run_operation(provider, stack, "up", policy_packs=_policy_packs(policy, infra_dir), infra_dir=infra_dir)
    _summary(result)
    outputs = {k: (v.value, bool(v.secret)) for k, v in (getattr(result, "outputs", None) or {}).items()}
    _print_outputs(outputs, as_json=False)
    console().print(f"next: [cyan]cloudft submit SPEC --provider {provider} --stack {stack}[/]")


@infra_group.command("destroy")
@PROVIDER
@STACK
@YES
@INFRA_DIR
def destroy_cmd(provider: str, stack: str, yes: bool, infra_dir: Optional[str]) -> None:
    """Delete every resource of the stack (the bucket/registry must be empty unless forceDestroy is set)."""
    if not yes:
        click.confirm(f"destroy every resource of stack {stack!r} on {provider}?", abort=True)
    from ..infra.workspace import run_operation

    _summary(run_operation(provider, stack, "destroy", infra_dir=infra_dir))


@infra_group.command("outputs")
@PROVIDER
@STACK
@INFRA_DIR
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (secrets masked).")
def outputs_cmd(provider: str, stack: str, infra_dir: Optional[str], as_json: bool) -> None:
    """Print the stack's outputs (STACK may also be a `pulumi stack output --json` file). Secrets are masked."""
    from pathlib import Path

    if Path(stack).suffix.lower() == ".json" or Path(stack).is_file():
        from ..infra.outputs import stack_outputs

        # A file written by `pulumi stack output --json` holds no secret values ("[secret]" is refused).
        outputs = {k: (v, False) for k, v in stack_outputs(provider, stack, infra_dir=infra_dir).items()}
    else:
        from ..infra.workspace import read_outputs

        outputs = read_outputs(provider, stack, infra_dir=infra_dir)
    _print_outputs(outputs, as_json=as_json)


def _print_outputs(outputs: dict[str, tuple[Any, bool]], *, as_json: bool) -> None:
    masked = {k: ("[secret]" if secret else v) for k, (v, secret) in sorted(outputs.items())}
    if as_json:
        print_json(masked)
        return
    if not masked:
        raise CloudftError("the stack has no outputs", hint="run `cloudft infra up` first")
    from rich.table import Table

    table = Table("output", "value", title="stack outputs", title_justify="left")
    for key, value in masked.items():
        table.add_row(key, "" if value is None else str(value))
    console().print(table)
