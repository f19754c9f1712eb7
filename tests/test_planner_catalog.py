"""Catalog files, `cloudft catalog`, price refresh (offline failure, a local stand-in for the Azure API), hub config."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner

from cloudft.cli.catalog import catalog_group
from cloudft.errors import CloudftError
from cloudft.planner.arch import from_hub, normalise_name, resolve_arch
from cloudft.planner.catalog import find_instance, gpu_specs, load_catalog, raw_catalog
from cloudft.planner.prices import parse_aws_products, refresh


@pytest.mark.parametrize("provider", ["aws", "azure"])
def test_catalogs_are_dated_and_consistent(provider):
    doc = raw_catalog(provider)
    assert doc["taken"] and doc["sources"] and doc["origin"] == "bundled"
    rows = load_catalog(provider)
    assert len(rows) >= 10
    for inst in rows:
        assert inst.gpu in gpu_specs(), inst
        assert inst.gpu_memory_gb == gpu_specs()[inst.gpu]["memory_gb"], inst
        assert inst.on_demand_per_hour > 0 and inst.spot_per_hour < inst.on_demand_per_hour
    families = {r.type.split(".")[1] if provider == "aws" else r.gpu for r in rows}
    wanted = {"g5", "g6", "g6e", "p4d", "p4de", "p5"} if provider == "aws" else {"T4", "A10", "A100-80GB", "H100"}
    assert wanted <= families


def test_find_instance_suggests_close_names():
    assert find_instance("aws", "ML.G5.2XLARGE").gpus == 1
    with pytest.raises(CloudftError) as err:
        find_instance("aws", "ml.g5.2xlarg")
    assert "ml.g5.2xlarge" in err.value.hint


def test_catalog_list_cli():
    res = CliRunner().invoke(catalog_group, ["list", "--provider", "azure", "--gpu", "A100", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["instances"] and all(i["gpu"].startswith("A100") for i in data["instances"])
    table = CliRunner().invoke(catalog_group, ["list", "-p", "aws"])
    assert "ml.p5.48xlarge" in table.output and "2026" in table.output


def test_refresh_offline_fails_clearly_and_keeps_shipped_prices(monkeypatch):
    monkeypatch.setenv("CLOUDFT_AZURE_PRICES_URL", "http://127.0.0.1:9/api/retail/prices")  # nothing listens
    with pytest.raises(CloudftError) as err:
        refresh("azure")
    assert "Azure Retail Prices API" in err.value.message and "2026-11-09" in err.value.hint
    assert raw_catalog("azure")["origin"] == "bundled"


def test_refresh_aws_without_credentials_fails_clearly(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    res = CliRunner().invoke(catalog_group, ["refresh", "--provider", "aws"])
    assert res.exit_code != 0
    assert isinstance(res.exception, CloudftError) and "credentials" in res.exception.message.lower()


class _AzurePrices(BaseHTTPRequestHandler):
    """Answers like the Retail Prices API: a Linux meter, a Spot meter and a Windows meter per size."""

    def do_GET(self):  # noqa: N802
        flt = parse_qs(urlparse(self.path).query)["$filter"][0]
        sku = flt.split("armSkuName eq '")[1].split("'")[0]
        items = [
            {"armSkuName": sku, "skuName": "X", "productName": "NC Series", "retailPrice": 1.5, "unitOfMeasure": "1 Hour"},
            {"armSkuName": sku, "skuName": "X Spot", "productName": "NC Series", "retailPrice": 0.3,
             "unitOfMeasure": "1 Hour"},
            {"armSkuName": sku, "skuName": "X", "productName": "NC Series Windows", "retailPrice": 9.0,
             "unitOfMeasure": "1 Hour"},
        ]
        body = json.dumps({"Items": items, "NextPageLink": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def azure_api(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _AzurePrices)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("CLOUDFT_AZURE_PRICES_URL", f"http://127.0.0.1:{server.server_port}/api/retail/prices")
    yield
    server.shutdown()


def test_refresh_azure_writes_dated_catalog_that_the_planner_uses(azure_api):
    res = CliRunner().invoke(catalog_group, ["refresh", "-p", "azure"])
    assert res.exit_code == 0, res.output
    doc = raw_catalog("azure")
    assert doc["origin"] != "bundled" and doc["refreshed_rows"] == len(doc["instances"])
    inst = find_instance("azure", "Standard_NC24ads_A100_v4")
    assert (inst.on_demand_per_hour, inst.spot_per_hour, inst.spot_source) == (1.5, 0.3, "listed")
    assert inst.gpus == 1 and inst.gpu_memory_gb == 80  # hardware facts kept


def test_parse_aws_price_list_picks_the_training_meter():
    def product(usage, usd):
        return json.dumps({"product": {"attributes": {"usagetype": usage}},
                           "terms": {"OnDemand": {"t": {"priceDimensions": {"d": {"pricePerUnit": {"USD": usd}}}}}}})
    plist = [product("USE1-Host:ml.g5.xlarge", "1.0"), product("USE1-Train:ml.g5.xlarge", "1.408")]
    assert parse_aws_products(plist, "ml.g5.xlarge") == 1.408
    assert parse_aws_products(plist[:1], "ml.g5.xlarge") is None


@pytest.mark.parametrize("name, key", [
    ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama-3-8b"), ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b-v0.3"), ("google/gemma-2-9b-it", "gemma-2-9b"),
    ("microsoft/Phi-3-mini-4k-instruct", "phi-3-mini"), ("unsloth/Llama-3.2-3B-Instruct-bnb-4bit", "llama-3.2-3b"),
    ("Qwen/Qwen-7B-Chat-Int4", "qwen-7b"), ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo"),
])
def test_well_known_ids_resolve_offline(name, key):
    assert normalise_name(name) == key
    assert resolve_arch(name).arch is not None


def test_config_without_weights_from_a_hub_endpoint(monkeypatch):
    cfg = {"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
           "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True}
    seen = []

    class Hub(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            body = json.dumps(cfg).encode() if self.path.endswith("/config.json") else b"{}"
            self.send_response(200 if self.path.endswith("/config.json") else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        arch = from_hub("acme/custom-0.5b")
        assert arch is not None and arch.params / 1e9 == pytest.approx(0.494, rel=0.02)
        assert seen == ["/acme/custom-0.5b/resolve/main/config.json"]  # config only, no weights
        assert from_hub("acme/custom-0.5b").source.startswith("hub config.json (cached")
    finally:
        server.shutdown()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert from_hub("acme/other") is None
