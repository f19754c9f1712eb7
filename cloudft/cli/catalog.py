"""`cloudft catalog`: the instance catalogs the planner chooses from, and a price refresh."""

from __future__ import annotations

from typing import Optional

import click

from .output import console, print_json

PROVIDERS = click.Choice(["aws", "azure"])


@click.group("catalog")
def catalog_group() -> None:
    """GPU instance catalogs (SageMaker, Azure ML) with prices, used by `cloudft plan`."""


@catalog_group.command("list")
@click.option("--provider", "-p", type=PROVIDERS, required=True, help="Which catalog.")
@click.option("--gpu", default=None, help="Only instances with this GPU (T4, A10G, L4, L40S, A100, H100).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(provider: str, gpu: Optional[str], as_json: bool) -> None:
    """List instance types with GPUs, memory and on-demand/spot prices per hour."""
    from ..planner.catalog import gpu_matches, load_catalog, raw_catalog

    doc = raw_catalog(provider)
    rows = [i for i in load_catalog(provider) if not gpu or gpu_matches(gpu, i.gpu)]
    if as_json:
        print_json({"provider": provider, "region": doc.get("region"), "taken": doc.get("taken"),
                    "origin": doc.get("origin"), "instances": [i.__dict__ for i in rows]})
        return
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        from ..errors import CloudftError

        known = sorted({i.gpu for i in load_catalog(provider)})
        raise CloudftError(f"no {provider} instance has GPU '{gpu}'", hint=f"--gpu one of: {', '.join(known)}")
    table = Table(title=escape(f"{provider} ({doc.get('service')}, {doc.get('region')}), prices as of "
                               f"{doc.get('taken')} [{doc.get('origin')}]"), title_justify="left")
    for name in ("instance", "GPU", "GPUs", "GPU GB", "vCPU", "$/h", "spot $/h"):
        # the instance name is what goes into compute.instance_type: never cut; short headers may wrap
        table.add_column(name, no_wrap=name in ("instance", "GPU", "$/h", "spot $/h"), overflow="fold")
    for i in rows:
        table.add_row(i.type, i.gpu, str(i.gpus), f"{i.gpu_memory_gb:g}", str(i.vcpus),
                      "-" if i.on_demand_per_hour is None else f"{i.on_demand_per_hour:.3f}",
                      "-" if i.spot_per_hour is None else f"{i.spot_per_hour:.3f}" +
                      ("" if i.spot_source == "listed" else "*"))
    out = console()
    out.print(table)
    out.print("$/h: on-demand price per hour (per instance)")
    out.print("* spot = assumed fraction of on-demand; refresh to fetch listed spot prices (Azure)")


@catalog_group.command("refresh")
@click.option("--provider", "-p", type=PROVIDERS, multiple=True, help="Which catalog(s); default both.")
@click.option("--region", default=None, help="Price region (default: the catalog's, us-east-1 / eastus).")
def refresh_cmd(provider: tuple[str, ...], region: Optional[str]) -> None:
    """Fetch current prices (AWS Price List API, Azure Retail Prices API); offline the shipped files stay in use."""
    from ..errors import CloudftError
    from ..planner.prices import refresh

    failed: list[CloudftError] = []
    for name in provider or ("aws", "azure"):
        try:
            doc = refresh(name, region)
        except CloudftError as exc:
            failed.append(exc)
            continue
        console().print(f"[green]refreshed[/] {name}: {doc['refreshed_rows']} of {len(doc['instances'])} prices, "
                        f"taken {doc['taken']} -> {doc['origin']}")
    if failed:
        raise CloudftError("\n".join(e.message for e in failed), hint=failed[0].hint)
