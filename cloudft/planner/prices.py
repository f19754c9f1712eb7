"""Refresh catalog prices from the AWS Price List API and the Azure Retail Prices API.

Hardware facts stay those of the bundled catalog; only prices change. The result is written to
$CLOUDFT_HOME/planner/catalog_<provider>.json (stamped with the retrieval date), which the planner then prefers.
Offline, or without AWS credentials, a refresh fails with a CloudftError and the shipped prices stay in use.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from typing import Any, Callable, Optional

from ..errors import CloudftError
from .catalog import raw_catalog, refreshed_path

AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"
TIMEOUT_S = 10.0


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


# -- Azure ------------------------------------------------------------------------------------------

def azure_query_url(sku: str, region: str, base: Optional[str] = None) -> str:
    """The Retail Prices API request for one VM size's Linux consumption meters in a region."""
    flt = (f"serviceName eq 'Virtual Machines' and armSkuName eq '{sku}' and armRegionName eq '{region}' "
           "and priceType eq 'Consumption'")
    base = base or os.environ.get("CLOUDFT_AZURE_PRICES_URL", AZURE_PRICES_URL)
    return base + "?" + urllib.parse.urlencode({"$filter": flt})


def parse_azure_items(items: list[dict[str, Any]]) -> dict[str, Optional[float]]:
    """Linux pay-as-you-go and spot hourly prices from Retail Prices API items (Windows meters ignored)."""
    on_demand = spot = None
    for item in items:
        if "windows" in str(item.get("productName", "")).lower():
            continue
        if item.get("unitOfMeasure") not in (None, "1 Hour"):
            continue
        price = float(item.get("retailPrice") or item.get("unitPrice") or 0) or None
        sku = str(item.get("skuName", "")).lower()
        if "spot" in sku:
            spot = price if spot is None else min(spot, price)
        elif "low priority" in sku:
            spot = spot if spot is not None else price
        else:
            on_demand = price if on_demand is None else min(on_demand, price)
    return {"on_demand_per_hour": on_demand, "spot_per_hour": spot}


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - https API or a test server
        return json.loads(resp.read())


def fetch_azure(sku: str, region: str, timeout: float = TIMEOUT_S) -> dict[str, Optional[float]]:
    """Current prices of one Azure VM size (follows NextPageLink)."""
    url: Optional[str] = azure_query_url(sku, region)
    items: list[dict[str, Any]] = []
    while url:
        page = _get_json(url, timeout)
        items.extend(page.get("Items", []))
        url = page.get("NextPageLink")
    return parse_azure_items(items)


# -- AWS --------------------------------------------------------------------------------------------

def parse_aws_products(price_list: list[str], instance_type: str) -> Optional[float]:
    """On-demand USD/hour of SageMaker *training* for an instance type from Price List API products."""
    for raw in price_list:
        product = json.loads(raw) if isinstance(raw, str) else raw
        usage = product.get("product", {}).get("attributes", {}).get("usagetype", "")
        if not usage.endswith(f"Train:{instance_type}"):
            continue
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = dim.get("pricePerUnit", {}).get("USD")
                if usd and float(usd) > 0:
                    return float(usd)
    return None


def fetch_aws(instance_type: str, region: str, client: Any = None) -> dict[str, Optional[float]]:
    """Current SageMaker training price of one instance type (the Price List API has no spot rate)."""
    if client is None:
        import boto3
        from botocore.config import Config

        client = boto3.client("pricing", region_name="us-east-1",
                              config=Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S,
                                            retries={"max_attempts": 1}))
    resp = client.get_products(ServiceCode="AmazonSageMaker", Filters=[
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
    ], MaxResults=100)
    return {"on_demand_per_hour": parse_aws_products(resp.get("PriceList", []), instance_type), "spot_per_hour": None}


# -- both -------------------------------------------------------------------------------------------

def refresh(provider: str, region: Optional[str] = None,
            fetch: Optional[Callable[[str, str], dict[str, Optional[float]]]] = None) -> dict[str, Any]:
    """Fetch current prices for every catalog entry, write the refreshed catalog, and return it.

    Raises CloudftError when no price could be fetched (offline, no credentials), naming the shipped date.
    """
    doc = raw_catalog(provider)
    region = region or doc.get("region")
    fetch = fetch or (fetch_aws if provider == "aws" else fetch_azure)
    updated, errors = 0, []
    rows = []
    offered, not_offered = [], []
    for row in doc["instances"]:
        row = dict(row)
        try:
            prices = fetch(row["type"], region)
        except Exception as exc:  # network, credentials, throttling: reported together below
            errors.append(f"{row['type']}: {type(exc).__name__}: {exc}")
            if len(errors) >= 2 and updated == 0:
                break  # offline: don't wait for every row to time out
            rows.append(row)
            continue
        # the price list answered with no price for the type in the region: it is not offered there
        # (AWS: no SageMaker training price; Azure: no Linux consumption meter)
        (offered if prices.get("on_demand_per_hour") else not_offered).append(row["type"])
        if prices.get("on_demand_per_hour"):
            row.update({k: v for k, v in prices.items() if v is not None})
            row["price_date"] = _today()
            row["price_source"] = "aws-price-list-api" if provider == "aws" else "azure-retail-prices-api"
            updated += 1
        rows.append(row)
    if updated == 0:
        api = "AWS Price List API (needs AWS credentials)" if provider == "aws" else "Azure Retail Prices API"
        raise CloudftError(
            f"could not refresh {provider} prices from the {api}: " + (errors[0] if errors else "no prices returned"),
            hint=f"check the network/credentials; the planner keeps using the catalog taken {doc.get('taken')}")
    rows += doc["instances"][len(rows):]
    out = {**{k: v for k, v in doc.items() if k not in ("instances", "origin")}, "taken": _today(),
           "region": region, "refreshed_rows": updated, "refresh_errors": errors[:5], "instances": rows}
    # kept across refreshes of other regions; read by catalog.region_offers
    out["availability"] = {**(doc.get("availability") or {}), region: {
        "offered": offered, "not_offered": not_offered, "taken": _today(),
        "source": "aws-price-list-api" if provider == "aws" else "azure-retail-prices-api"}}
    path = refreshed_path(provider)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(path)
    out["origin"] = str(path)
    return out
