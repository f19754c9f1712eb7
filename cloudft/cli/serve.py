"""Serving commands: deploy, invoke, undeploy (each delegates to a provider; local serves on this machine)."""

from __future__ import annotations

from typing import Optional

import click

from ..errors import CloudftError
from .output import console, err_console, print_json

PROVIDERS = click.Choice(["local", "aws", "azure"])
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command("deploy")
@click.argument("run_id")
@click.option("--provider", "-p", type=PROVIDERS, default=None,
              help="Where to serve (default: where the run trained). `local` serves any completed run on this "
                   "machine, downloading a cloud run's outputs first.")
@click.option("--instance-type", default=None, help="aws/azure: endpoint instance/SKU (default: from the spec).")
@click.option("--endpoint-name", default=None, help="Name of the endpoint (default: derived from the run).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="local: the address the server listens on (it has no authentication: keep it on loopback).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="local: the port (default: a free one).")
@click.option("--timeout", type=click.FloatRange(1, 86400), default=900, show_default=True,
              help="local: seconds to wait for the server to load the model and answer.")
@click.option("--smoke-prompt", default=None,
              help="The smoke test's prompt (default: the spec's first eval prompt).")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoint (URL, model name, smoke test) as JSON.")
def deploy_cmd(run_id: str, provider: Optional[str], instance_type: Optional[str], endpoint_name: Optional[str],
               host: str, port: Optional[int], timeout: float, smoke_prompt: Optional[str], as_json: bool) -> None:
    """Serve RUN behind an endpoint, then smoke-test it with one greedy request.

    The target is checked first: a run it cannot serve (e.g. a DoRA adapter on vLLM without merged weights, a
    prompt-tuning adapter on vLLM, a reward model) is refused before anything is created, with the reason.
    Exits 1 when the smoke test fails (the endpoint stays up for you to look at).
    """
    from ..providers import get_provider
    from ..registry import Registry
    from ..serving.smoke import SmokeReport, smoke_prompt as default_prompt

    rec = Registry().get(run_id)
    prov = get_provider(provider or rec.provider)
    _options_fit(prov.name)
    if prov.name == "local" and host not in LOOPBACK:
        err_console().print(f"[yellow]warning:[/] the local server has no authentication: anyone who can reach "
                            f"{host} can use it")
    result = prov.deploy(rec, instance_type=instance_type, endpoint_name=endpoint_name, host=host, port=port,
                         timeout=timeout)
    prompt = smoke_prompt or default_prompt(rec)
    try:
        report = prov.smoke(rec, result, prompt)
    except CloudftError as exc:
        report = SmokeReport(prompt, "", "answered", False, detail=f"the request failed: {exc.render()}")
    result["smoke"] = report.to_dict()
    if as_json:
        print_json(result)
    else:
        out = console()
        for k, v in result.items():
            if k != "smoke" and v is not None:
                out.print(f"{k}: {v}", markup=False)
        out.print(f"[{'green' if report.ok else 'red'}]{report.line()}[/]")
        out.print(f"  prompt: {report.prompt!r}\n  answer: {report.answer!r}", markup=False)
    if not report.ok:
        raise SystemExit(1)


LOCAL_ONLY = ("host", "port", "timeout")


def _options_fit(provider: str) -> None:
    """Refuse options the chosen provider would not use (rather than ignoring them)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [n for n in ctx.params if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    wrong = [n for n in given if (n in LOCAL_ONLY) != (provider == "local") and n in (*LOCAL_ONLY, "instance_type")]
    if wrong:
        opts = ", ".join("--" + n.replace("_", "-") for n in wrong)
        raise CloudftError(f"{opts} {'does' if len(wrong) == 1 else 'do'} not apply to --provider {provider}",
                           hint="--host/--port/--timeout are for local; --instance-type for aws and azure")


def _provider_for(endpoint: str, provider: Optional[str]) -> str:
    """The provider named, else local when a local endpoint has this name."""
    if provider:
        return provider
    from ..serving.local import NAME, find_endpoint

    if NAME.match(endpoint) and find_endpoint(endpoint) is not None:
        return "local"
    raise CloudftError(f"no local endpoint '{endpoint}'", hint="for a cloud endpoint pass --provider aws or azure")


@click.command("invoke")
@click.argument("endpoint")
@click.option("--prompt", required=True, help="The prompt to send.")
@click.option("--provider", "-p", type=PROVIDERS, default=None,
              help="Default: local when a local endpoint has this name.")
@click.option("--max-new-tokens", type=click.IntRange(1, 1 << 20), default=128, show_default=True)
@click.option("--base", is_flag=True, help="Ask the bare base model (the adapter switched off).")
@click.option("--chat", is_flag=True, help="local: send the prompt as a chat message (/v1/chat/completions).")
def invoke_cmd(endpoint: str, prompt: str, provider: Optional[str], max_new_tokens: int, base: bool,
               chat: bool) -> None:
    """Send PROMPT to ENDPOINT (greedy) and print the answer."""
    from ..providers import get_provider

    name = _provider_for(endpoint, provider)
    if chat and name != "local":
        raise CloudftError("--chat is for local endpoints", hint="leave it out")
    click.echo(get_provider(name).invoke(endpoint, prompt, max_new_tokens=max_new_tokens, base=base, chat=chat))


@click.command("undeploy")
@click.argument("endpoint")
@click.option("--provider", "-p", type=PROVIDERS, default=None,
              help="Default: local when a local endpoint has this name.")
def undeploy_cmd(endpoint: str, provider: Optional[str]) -> None:
    """Delete ENDPOINT and what deploy created for it (local: stop its server)."""
    from ..providers import get_provider

    get_provider(_provider_for(endpoint, provider)).undeploy(endpoint)
    console().print(f"removed {endpoint}", markup=False)
