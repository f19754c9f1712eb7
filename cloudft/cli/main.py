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
    "deploy": ("cloudft.cli.serve:deploy_cmd", "Serve a run (here or on a managed endpoint) and smoke-test it."),
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


#: SDK loggers whose routine chatter (INFO lines, "experimental class" notices, pipeline-definition warnings)
#: would bury cloudft's own output; set by name, so nothing is imported
QUIET_LOGGERS = {"sagemaker.config": "WARNING", "sagemaker.core.utils.utils": "WARNING",
                 "sagemaker.core.workflow.utilities": "ERROR", "azure.ai.ml._utils._experimental": "ERROR",
                 "azure.ai.ml._schema.core.fields": "ERROR"}


def _quiet_sdk_logs() -> None:
    import logging
    import warnings

    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print one clear message (no traceback) and exit non-zero."""
    _quiet_sdk_logs()
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
    except Exception as exc:  # noqa: BLE001 - only missing/expired cloud credentials are turned into a message
        err = cloud_auth_error(exc)
        if err is None:
            raise
        _print_error(err.render())
        sys.exit(err.exit_code)


#: AWS error codes that mean "these credentials are not valid (any more)"
AWS_AUTH_CODES = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
                  "RequestExpired", "SignatureDoesNotMatch"}


def cloud_auth_error(exc: BaseException) -> "CloudftError | None":
    """Missing, expired or rejected AWS/Azure credentials as a CloudftError (None for anything else).

    Checked against the SDKs' exception classes only when the SDK is already imported (no import here).
    """
    boto = sys.modules.get("botocore.exceptions")
    if boto is not None:
        missing = (boto.NoCredentialsError, boto.PartialCredentialsError, boto.CredentialRetrievalError,
                   boto.TokenRetrievalError, boto.SSOError)
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, boto.ClientError) else None
        if isinstance(exc, missing) or code in AWS_AUTH_CODES:
            return CloudftError(f"AWS credentials: {exc}",
                                hint="sign in (`aws sso login` / `aws configure`), or set AWS_PROFILE or "
                                     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(exc, boto.NoRegionError):
            return CloudftError("no AWS region", hint="set aws.region in the spec, AWS_DEFAULT_REGION, or use --stack")
    azure = sys.modules.get("azure.core.exceptions")
    if azure is not None and isinstance(exc, azure.ClientAuthenticationError):
        first = (getattr(exc, "message", None) or str(exc)).strip().splitlines()
        return CloudftError(f"Azure sign-in failed: {first[0] if first else type(exc).__name__}",
                            hint="run `az login` (or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET "
                                 "for a service principal); jobs need access to the workspace")
    return None


def _print_error(text: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(text)}")


if __name__ == "__main__":
    main()
