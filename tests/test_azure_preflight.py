"""Azure preflight rules (cloudft/providers/azure/preflight.py): each one catching its bad case, located in the spec,
and saying nothing it could not check as if it were fine. Stack outputs come from the real Pulumi program run under
mocks, so the role check is evaluated against the roles our infra creates."""

from __future__ import annotations

import json

import pytest
from infra_fixtures import run_program

from cloudft.errors import CloudftError
from cloudft.plan import build_plan
from cloudft.preflight import enforce
from cloudft.providers.azure import AzureProvider, access
from cloudft.spec import load_spec_text
from helpers import REPO

LORA = REPO / "examples" / "azure-lora.yaml"
SFT_DPO = REPO / "examples" / "azure-sft-dpo.yaml"
CLIENT = "  identity_client_id: 00000000-0000-0000-0000-0000000000c1\n"


def check(text: str, stack: dict | None = None, tmp_path=None, path=LORA):
    """(findings, plan) for a spec text, optionally with stack outputs (written as `pulumi stack output --json`)."""
    prov = AzureProvider()
    if stack is not None:
        out = tmp_path / "outputs.json"
        out.write_text(json.dumps(stack))
        prov.stack = str(out)
    spec = load_spec_text(text, str(path))
    prov.validate(spec)
    plan = build_plan(spec, "azure", locate=prov.locate)
    return prov.preflight(plan), plan


def by_rule(findings, rule_id, severity=None):
    return [f for f in findings if f.rule == rule_id and (severity is None or f.severity == severity)]


@pytest.fixture(scope="module")
def stack_outputs():
    """The outputs of infra/azure's program (under Pulumi mocks), as `--stack outputs.json` gives them."""
    from infra.components.azure_stack import AzureStackSettings, ClusterSettings, build_azure_stack

    _, out = run_program(lambda: build_azure_stack(AzureStackSettings(
        name="cft", location="westeurope", cluster=ClusterSettings(vm_size="Standard_NC24ads_A100_v4"))))
    return {k: v for k, v in out.items() if v is not None}


# -- identity ----------------------------------------------------------------------------------------

def test_serverless_with_secrets_and_no_client_id_is_refused_with_its_source():
    findings, plan = check(LORA.read_text().replace(CLIENT, ""))
    (f,) = by_rule(findings, "azure.identity-compute", "error")
    assert "serverless compute does not support a system-assigned identity" in f.message
    assert "how-to-use-serverless-compute" in f.source
    with pytest.raises(CloudftError) as err:
        enforce(plan, findings)
    assert f"{LORA}:24:1: azure: serverless compute" in err.value.message


def test_a_client_id_or_a_cluster_satisfies_the_identity_rule():
    assert not by_rule(check(LORA.read_text())[0], "azure.identity-compute")
    cluster = LORA.read_text().replace(CLIENT, "").replace("  # compute: gpu-cluster ", "  compute: gpu-cluster  #")
    assert not by_rule(check(cluster)[0], "azure.identity-compute")


def test_a_client_id_other_than_the_stacks_is_flagged(tmp_path, stack_outputs):
    findings, _ = check(LORA.read_text(), stack_outputs, tmp_path)
    (f,) = by_rule(findings, "azure.identity-compute", "warning")
    assert f.field == "azure.identity_client_id" and "not the stack's user-assigned identity" in f.message
    stacked = LORA.read_text().replace(CLIENT, "")  # the stack fills its own client id
    assert not by_rule(check(stacked, stack_outputs, tmp_path)[0], "azure.identity-compute")


@pytest.mark.parametrize("kind, why", [("user", "AzureMLOnBehalfOfCredential"), ("aml_token", "AML token")])
def test_secrets_need_a_managed_identity(kind, why):
    text = LORA.read_text().replace(CLIENT, f"  identity: {kind}\n")
    (f,) = by_rule(check(text)[0], "azure.secrets-identity", "error")
    assert why in f.message and f.field == "azure.identity"


# -- roles ---------------------------------------------------------------------------------------------

def test_roles_granted_by_the_stack_program_satisfy_the_job(tmp_path, stack_outputs):
    text = LORA.read_text().replace(CLIENT, "").replace("  key_vault: cloudft-kv\n", "")
    findings, _ = check(text, stack_outputs, tmp_path)
    assert not by_rule(findings, "azure.roles")


def test_a_missing_key_vault_grant_is_an_error_at_the_vault_field(tmp_path, stack_outputs):
    stack = dict(stack_outputs, role_assignments=[g for g in stack_outputs["role_assignments"]
                                                  if not (g["actor"] == "training" and g["scope"] == "key_vault")])
    text = LORA.read_text().replace(CLIENT, "")
    (f,) = by_rule(check(text, stack, tmp_path)[0], "azure.roles", "error")
    assert "Key Vault Secrets User" in f.message and f.field == "azure.key_vault"
    assert "how-to-use-secrets-in-runs" in f.source
    no_secrets = text.replace("secrets:\n  HF_TOKEN: keyvault:hf-token\n", "")
    assert not by_rule(check(no_secrets, stack, tmp_path)[0], "azure.roles", "error")  # not needed then


def test_another_vault_than_the_stacks_is_not_taken_as_granted(tmp_path, stack_outputs):
    text = LORA.read_text().replace(CLIENT, "").replace("key_vault: cloudft-kv", "key_vault: team-vault")
    (f,) = by_rule(check(text, stack_outputs, tmp_path)[0], "azure.roles", "warning")
    assert "team-vault is not the stack's vault" in f.message


def test_without_stack_outputs_roles_are_reported_unverified_not_fine():
    (f,) = by_rule(check(LORA.read_text())[0], "azure.roles")
    assert f.severity == "info" and "not verified" in f.message
    assert all(g.role in f.message for g in access.needed("training", secrets=True))


# -- low priority --------------------------------------------------------------------------------------

def test_job_tier_on_a_cluster_is_not_silently_dropped():
    text = SFT_DPO.read_text().replace("  priority: low", "  compute: gpu-lowpri\n  job_tier: Spot")
    (f,) = by_rule(check(text, path=SFT_DPO)[0], "azure.low-priority", "warning")
    assert "apply to serverless jobs" in f.message and f.field == "azure.job_tier"


def test_spot_on_the_stacks_dedicated_cluster_is_flagged(tmp_path, stack_outputs):
    text = SFT_DPO.read_text().replace("  priority: low", "  compute: cft-gpu").replace(
        "Standard_NC48ads_A100_v4", "Standard_NC24ads_A100_v4")
    assert stack_outputs["compute_tier"] == "Dedicated"
    findings, _ = check(text, stack_outputs, tmp_path, path=SFT_DPO)
    (f,) = by_rule(findings, "azure.low-priority", "warning")
    assert "dedicated nodes" in f.message and f.field == "compute.spot"
    low = dict(stack_outputs, compute_tier="LowPriority")
    assert not by_rule(check(text, low, tmp_path, path=SFT_DPO)[0], "azure.low-priority")
    unknown = by_rule(check(text, path=SFT_DPO)[0], "azure.low-priority")
    assert [f.severity for f in unknown] == ["info"] and "not verified" in unknown[0].message


def test_serverless_spot_with_a_non_spot_tier_is_flagged():
    text = SFT_DPO.read_text().replace("  priority: low", "  job_tier: Standard")
    (f,) = by_rule(check(text, path=SFT_DPO)[0], "azure.low-priority", "warning")
    assert "job_tier is Standard" in f.message


# -- VM sizes -----------------------------------------------------------------------------------------

def test_a_size_the_region_does_not_offer_is_refused(monkeypatch):
    from cloudft.planner import prices

    def fake_fetch(sku, region):  # Retail Prices API: no Linux meter for the A100 size in this region
        return {} if sku == "Standard_NC24ads_A100_v4" else {"on_demand_per_hour": 1.0}

    prices.refresh("azure", region="westeurope", fetch=fake_fetch)
    (f,) = by_rule(check(LORA.read_text())[0], "azure.vm-size", "error")
    assert "Standard_NC24ads_A100_v4 is not offered in westeurope" in f.message and f.field == "compute.instance_type"
    other = LORA.read_text().replace("Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4")
    assert not by_rule(check(other)[0], "azure.vm-size")  # refreshed: offered there


def test_region_availability_is_unknown_rather_than_assumed():
    (f,) = by_rule(check(LORA.read_text())[0], "azure.vm-size")
    assert f.severity == "info" and "not verified" in f.message
    eastus = LORA.read_text().replace("location: westeurope", "location: eastus")
    assert not by_rule(check(eastus)[0], "azure.vm-size")  # the catalog's own region: priced, so offered
    odd = LORA.read_text().replace("Standard_NC24ads_A100_v4", "Standard_NC6s_v3")
    (f,) = by_rule(check(odd)[0], "azure.vm-size")
    assert f.severity == "warning" and "not in cloudft's Azure catalog" in f.message


def test_a_plan_sized_for_another_vm_than_the_cluster_is_refused(tmp_path, stack_outputs):
    text = LORA.read_text().replace("  # compute: gpu-cluster ", "  compute: cft-gpu  #").replace(
        "Standard_NC24ads_A100_v4", "Standard_NC96ads_A100_v4")
    (f,) = by_rule(check(text, stack_outputs, tmp_path)[0], "azure.vm-size", "error")
    assert "the cluster cft-gpu runs Standard_NC24ads_A100_v4" in f.message


# -- environment contents ----------------------------------------------------------------------------

def test_explicit_mlflow_tracking_with_an_image_without_mlflow_is_refused():
    text = LORA.read_text().replace(
        "  # environment: {image: myacr.azurecr.io/cloudft/train:1.0}   # prebuilt image (fastest)",
        "  environment: {image: myacr.azurecr.io/cloudft/train:1.0, provides: [azure-identity]}").replace(
        "  max_length: 512\n", "  max_length: 512\ntracking:\n  mlflow: true\n")
    (f,) = by_rule(check(text)[0], "azure.environment-contents", "error")
    assert "does not provide mlflow" in f.message and f.field == "tracking.mlflow"


def test_a_base_image_without_a_cuda_tag_is_warned_about():
    text = LORA.read_text().replace(
        "  # environment: {image: myacr.azurecr.io/cloudft/train:1.0}   # prebuilt image (fastest)",
        "  environment: {base_image: myacr.azurecr.io/base:1}")
    (f,) = by_rule(check(text)[0], "azure.environment-contents", "warning")
    assert "does not name its CUDA version" in f.message


# -- endpoint SKU ---------------------------------------------------------------------------------------

def test_an_endpoint_sku_too_small_for_the_model_is_flagged_at_plan_and_refused_at_deploy(tmp_path):
    text = LORA.read_text().replace("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct").replace(
        "  location: westeurope\n", "  location: westeurope\n  deploy: {instance_type: Standard_NC4as_T4_v3}\n")
    (f,) = by_rule(check(text)[0], "azure.endpoint-sku")
    assert f.severity == "warning" and f.field == "azure.deploy.instance_type"
    assert "needs about 17.6 GB on one GPU" in f.message and "14.7 GB usable" in f.message
    from cloudft.providers.azure.preflight import endpoint_findings

    assert not [x for x in endpoint_findings("Standard_NV36ads_A10_v5", "Qwen/Qwen2.5-7B-Instruct")
                if x.severity == "error"]
    (big,) = endpoint_findings("Standard_ND96amsr_A100_v4", "meta-llama/Llama-3.1-70B-Instruct")
    assert big.severity == "error" and "single GPU" in big.message  # 8 GPUs do not help score.py


def test_deploy_refuses_a_sku_the_model_does_not_fit_before_any_request():
    from cloudft.providers.azure.deploy import serve_entities
    from cloudft.providers.azure.handle import AzureHandle
    from cloudft.providers.azure.section import AzureSection
    from cloudft.registry import RunRecord

    handle = AzureHandle(stages=("0-sft",), job_type="command", azure={}, outputs={"0-sft": "azureml://x/"},
                         base_model="Qwen/Qwen2.5-7B-Instruct", instance_type="Standard_NC4as_T4_v3")
    run = RunRecord(run_id="r", name="n", provider="azure", status="completed", handle=handle.model_dump(mode="json"))
    with pytest.raises(CloudftError, match="needs about 17.6 GB on one GPU"):
        serve_entities(run, AzureSection(), "ep-abc", None)


def test_docs_print_the_access_model_and_every_rule_with_its_source():
    from cloudft.providers.azure.preflight import RULES

    docs = (REPO / "docs" / "azure.md").read_text()
    block = docs.split("<!-- access:begin -->\n", 1)[1].split("\n<!-- access:end -->", 1)[0]
    assert block == access.markdown()  # regenerate with access.markdown() when the model changes
    for r in RULES:
        assert f"| `{r.id}` | {r.source} |" in docs


def test_serving_estimate_counts_the_weights_and_kv_cache_the_model_really_holds(tiny_model):
    """The two terms of the endpoint-SKU estimate that scale with the model, against the real model: 16-bit weights
    as loaded, and the KV cache transformers keeps for N tokens (the rest is the fitted overhead)."""
    import torch
    from transformers import AutoModelForCausalLM

    from cloudft.planner.arch import resolve_arch
    from cloudft.planner.memory import GIB, estimate_serving_memory

    arch = resolve_arch(str(tiny_model)).arch
    tokens = 48
    est = estimate_serving_memory(arch, tokens=tokens)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert est["weights_gb"] == pytest.approx(weights / GIB, rel=0.02)
    with torch.no_grad():
        out = model(torch.ones(1, tokens, dtype=torch.long), use_cache=True)
    cache = out.past_key_values
    kv = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert est["kv_cache_gb"] == pytest.approx(kv / GIB, rel=0.02)
