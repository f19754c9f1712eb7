"""Serving commands: deploy, invoke, undeploy (each delegates to the run's provider)."""

from __future__ import annotations

from typing import Optional

import click

from .output import console, print_json


@click.command("deploy")
@click.argument("run_id")
@click.option("--provider", "-p", type=click.Choice(["aws", "azure"]), default=None,
              help="Defaults to the provider the run trained on.")
@click.option("--instance-type", default=None, help="Endpoint instance/SKU (default: from the spec or planner).")
@click.option("--endpoint-name", default=None, help="Name of the endpoint (default: derived from the run).")
@click.option("--json", "as_json", is_flag=True)
def deploy_cmd(run_id: str, provider: Optional[str], instance_type: Optional[str], endpoint_name: Optional[str],
               as_json: bool) -> None:
    """Serve RUN's adapter on a managed endpoint."""
    from ..providers import get_provider
    from ..registry import Registry

    rec = Registry().get(run_id)
    prov = get_provider(provider or rec.provider)
    result = prov.deploy(rec, instance_type=instance_type, endpoint_name=endpoint_name)
    if as_json:
        print_json(result)
    else:
        for k, v in result.items():
            console().print(f"{k}: {v}")


@click.command("invoke")
@click.argument("endpoint")
@click.option("--prompt", required=True, help="The prompt to send.")
@click.option("--provider", "-p", type=click.Choice(["aws", "azure"]), required=True)
@click.option("--max-new-tokens", default=128, show_default=True)
def invoke_cmd(endpoint: str, prompt: str, provider: str, max_new_tokens: int) -> None:
    """Send PROMPT to ENDPOINT and print the answer."""
    from ..providers import get_provider

    click.echo(get_provider(provider).invoke(endpoint, prompt, max_new_tokens=max_new_tokens))


@click.command("undeploy")
@click.argument("endpoint")
@click.option("--provider", "-p", type=click.Choice(["aws", "azure"]), required=True)
def undeploy_cmd(endpoint: str, provider: str) -> None:
    """Delete ENDPOINT and what deploy created for it."""
    from ..providers import get_provider

    get_provider(provider).undeploy(endpoint)
    console().print(f"removed {endpoint}")
