"""Entry point of the `cloudft` CLI.

Commands are listed here as "module:attribute" and imported only when invoked, so `cloudft --help`
imports neither torch nor any cloud SDK. Each command group lives in its own module.
"""

from __future__ import annotations

import importlib
import sys

import click

from .. import __version__
from ..errors import CloudftError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:attr, one-line help shown by --help without importing the module)
    "init": ("cloudft.cli.core:init_cmd", "Write a commented starter job spec."),
    "validate": ("cloudft.cli.core:validate_cmd", "Check a job spec (and its provider section) without running it."),
    "schema": ("cloudft.cli.core:schema_cmd", "Print the job spec's JSON Schema (for editors)."),
    "plan": ("cloudft.cli.core:plan_cmd", "Show what a spec resolves to: run configs, data, instance, cost."),
    "submit": ("cloudft.cli.core:submit_cmd", "Start a job on a provider (local, aws, azure)."),
    "runs": ("cloudft.cli.core:runs_cmd", "List runs."),
    "status": ("cloudft.cli.core:status_cmd", "Show a run's status."),
    "logs": ("cloudft.cli.core:logs_cmd", "Print (or follow) a run's log."),
    "stop": ("cloudft.cli.core:stop_cmd", "Stop a run (it checkpoints first)."),
    "artifacts": ("cloudft.cli.core:artifacts_cmd", "Show or download a run's outputs."),
    "report": ("cloudft.cli.core:report_cmd", "Show where a run's evaluation report is."),
    "deploy": ("cloudft.cli.serve:deploy_cmd", "Serve a run's adapter on a managed endpoint."),
    "invoke": ("cloudft.cli.serve:invoke_cmd", "Send a prompt to a deployed endpoint."),
    "undeploy": ("cloudft.cli.serve:undeploy_cmd", "Remove what deploy created."),
    "catalog": ("cloudft.cli.catalog:catalog_group", "Instance catalogs and prices (list, refresh)."),
    "data": ("cloudft.cli.data:data_group", "Validate, prepare and describe datasets."),
    "label": ("cloudft.cli.label:label_group", "Human preference labeling: candidates, app, Ground Truth, export."),
    "infra": ("cloudft.cli.infra:infra_group", "Provision cloud infrastructure with Pulumi stacks."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target[0].split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return _unavailable(name)
            raise
        return getattr(mod, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def cmd() -> None:
        raise CloudftError(f"'cloudft {name}' is not available in this version")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cloudft")
def cli() -> None:
    """cloudft: fine-tune open LLMs on your data and serve them, on AWS, Azure or this machine,
    from one provider-neutral job spec.

    \b
    Quick start:
      cloudft init my-job.yaml
      cloudft validate my-job.yaml
      cloudft plan my-job.yaml --provider aws
      cloudft submit my-job.yaml --provider local
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print one clear message (no traceback) and exit non-zero."""
    try:
        cli.main(args=argv, prog_name="cloudft", standalone_mode=False)
    except CloudftError as exc:
        _print_error(exc.render())
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _print_error("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _print_error("interrupted")
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _print_error(text: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(text)}")


if __name__ == "__main__":
    main()
