"""Azure's documented rules that the SDK's shape validation cannot express, checked on the plan before anything is
sent (`cloudft plan` shows them, `cloudft submit` and `--dry-run` refuse errors). Each rule cites its source; each
has a test that shows it catching the bad case (tests/test_azure_preflight.py). No cloud calls: what only the
workspace knows is checked against a stack's outputs (`--stack`), and reported as unverified without them —
a rule never answers "fine" for something it could not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ...errors import CloudftError
from ...preflight import Finding, rule
from . import access
from .entities import identity_kind
from .section import AzureSection

if TYPE_CHECKING:
    from ...plan import Plan
    from ...spec import JobSpec

DOC = access.DOC
SRC_LOW_PRIORITY = (f"{DOC}/how-to-use-serverless-compute (queue_settings.job_tier Spot is for serverless jobs) and "
                    f"{DOC}/how-to-create-attach-compute-cluster (a cluster's nodes are dedicated or low priority)")
SRC_VM_SIZES = (f"{DOC}/concept-compute-target (supported VM series; not every size in every region) and the Azure "
                "Retail Prices API meters recorded by `cloudft catalog refresh --region`")
SRC_ENDPOINT_SKUS = f"{DOC}/reference-managed-online-endpoints-vm-sku-list"
SRC_ENVIRONMENT = (f"{DOC}/how-to-use-secrets-in-runs (the environment needs azure-identity) and "
                   f"{DOC}/how-to-use-mlflow-configure-tracking (MLflow tracking needs mlflow / azureml-mlflow)")
#: tokens score.py may hold for one request when nothing tighter is known (prompt + new tokens)
SERVING_TOKENS = 4096


@dataclass(frozen=True)
class AzureView:
    """What the Azure rules look at: the plan, the resolved `azure:` section and a stack's outputs (`--stack`)."""

    plan: "Plan"
    section: AzureSection
    stack: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> "JobSpec":
        return self.plan.spec

    def instance_type(self) -> Optional[str]:
        """The VM size the job runs on: the plan's (serverless), or the cluster's as the stack reports it."""
        if self.section.serverless:
            return self.plan.estimate.instance.type
        if self.stack.get("compute") == self.section.compute:
            return self.stack.get("compute_vm_size")
        return None

    def stack_cluster(self) -> bool:
        """Is the job's cluster the one the stack made (so its outputs describe it)?"""
        return not self.section.serverless and bool(self.stack) and self.stack.get("compute") == self.section.compute


def _identity_field(section: AzureSection) -> str:
    return "azure.identity" if section.identity else "azure"


@rule("azure.identity-compute", f"{access.SRC_SERVERLESS}; {access.SRC_CLUSTER}")
def identity_vs_compute(v: AzureView) -> Iterator[Finding]:
    kind = identity_kind(v.spec, v.section)
    if v.section.serverless and kind == "managed" and not v.section.identity_client_id:
        yield Finding("", "error",
                      "serverless compute does not support a system-assigned identity, and `identity: managed` "
                      "without a client id asks for one",
                      fix="set azure.identity_client_id to the workspace's user-assigned identity (the stack output "
                          "identity_client_id; pass --stack NAME), or run on a cluster (azure.compute)",
                      field=_identity_field(v.section))
    if kind == "managed" and v.section.identity_client_id and v.stack.get("identity_client_id") not in (
            None, v.section.identity_client_id):
        yield Finding("", "warning",
                      f"azure.identity_client_id {v.section.identity_client_id} is not the stack's user-assigned "
                      f"identity ({v.stack['identity_client_id']}): its role assignments are not the stack's",
                      fix="drop azure.identity_client_id to use the stack's identity, or grant yours the roles "
                          "listed in docs/azure.md", field="azure.identity_client_id")


@rule("azure.secrets-identity", access.SRC_SECRETS)
def secrets_need_a_managed_identity(v: AzureView) -> Iterator[Finding]:
    kind = identity_kind(v.spec, v.section)
    if v.spec.secrets and kind in ("user", "aml_token"):
        why = ("a user identity job gets Key Vault tokens only through AzureMLOnBehalfOfCredential, which the "
               "launcher does not use" if kind == "user" else "an AML token cannot be exchanged for a Key Vault token")
        yield Finding("", "error", f"the spec's secrets are read from Key Vault with a managed identity; {why}",
                      fix="set azure.identity: managed (with azure.identity_client_id on serverless), or drop "
                          "`secrets:`", field="azure.identity")


@rule("azure.roles", "; ".join(sorted({g.source for g in access.TRAINING.grants})))
def roles_granted(v: AzureView) -> Iterator[Finding]:
    secrets = bool(v.spec.secrets)
    granted = v.stack.get("role_assignments")
    if not isinstance(granted, list):
        need = ", ".join(f"{g.role} on {access.SCOPES[g.scope]}" for g in access.needed("training", secrets=secrets))
        yield Finding("", "info", f"role assignments not verified (no --stack outputs): the job's identity needs {need}",
                      fix="pass --stack NAME, or check the table in docs/azure.md (Identities and roles)")
        return
    for g in access.missing("training", granted, secrets=secrets):
        yield Finding("", "error", f"the stack does not grant the job's identity {g.role} on {access.SCOPES[g.scope]} "
                                   f"({g.why})", fix="update the stack (pulumi up) or grant the role by hand",
                      source=g.source, field="azure.key_vault" if g.scope == "key_vault" else None)
    if secrets and v.stack.get("key_vault") and v.section.key_vault != v.stack["key_vault"]:
        yield Finding("", "warning",
                      f"azure.key_vault {v.section.key_vault} is not the stack's vault ({v.stack['key_vault']}): the "
                      "stack granted the job's identity Key Vault Secrets User on its own vault only",
                      fix=f"grant Key Vault Secrets User on {v.section.key_vault} to the job's identity",
                      field="azure.key_vault")


@rule("azure.low-priority", SRC_LOW_PRIORITY)
def low_priority(v: AzureView) -> Iterator[Finding]:
    spot, sec = v.spec.compute.spot, v.section
    if not sec.serverless and (sec.job_tier or sec.priority):
        yield Finding("", "warning",
                      f"azure.job_tier / azure.priority apply to serverless jobs; the cluster {sec.compute} ignores "
                      "them (its own tier decides)", fix="remove them, or leave azure.compute unset for serverless",
                      field="azure.job_tier" if sec.job_tier else "azure.priority")
    if sec.serverless and spot and sec.job_tier not in (None, "Spot"):
        yield Finding("", "warning", f"compute.spot asks for spot capacity but azure.job_tier is {sec.job_tier}",
                      fix="set azure.job_tier: Spot, or compute.spot: false", field="azure.job_tier")
    if not sec.serverless and spot:
        tier = v.stack.get("compute_tier") if v.stack_cluster() else None
        if tier == "Dedicated":
            yield Finding("", "warning", f"compute.spot: the cluster {sec.compute} has dedicated nodes: the job "
                                         "runs (and bills) at the dedicated price",
                          fix="use a low-priority cluster (cloudft:cluster.lowPriority: true), serverless, or "
                              "compute.spot: false", field="compute.spot")
        elif tier is None:
            yield Finding("", "info", f"compute.spot on the cluster {sec.compute}: low priority only if the cluster "
                                      "was created with low-priority nodes (not verified without --stack)",
                          field="compute.spot")


@rule("azure.vm-size", SRC_VM_SIZES)
def vm_size(v: AzureView) -> Iterator[Finding]:
    from ...planner.catalog import find_instance, region_offers

    planned = v.plan.estimate.instance.type
    if v.stack_cluster() and v.stack.get("compute_vm_size") and planned and \
            planned.lower() != str(v.stack["compute_vm_size"]).lower():
        yield Finding("", "error",
                      f"the plan sizes the job for {planned} but the cluster {v.section.compute} runs "
                      f"{v.stack['compute_vm_size']}: processes per node and memory would be wrong",
                      fix=f"set compute.instance_type: {v.stack['compute_vm_size']}, or run serverless",
                      field="compute.instance_type")
    size = v.instance_type()
    if not size:
        return
    try:
        find_instance("azure", size)
    except CloudftError:
        yield Finding("", "warning", f"{size} is not in cloudft's Azure catalog: its GPUs per node and memory are "
                                     "assumed, and whether the region offers it is not checked",
                      fix="check `az ml compute list-sizes --location <region>`; `cloudft catalog list --provider "
                          "azure` shows the known sizes", field="compute.instance_type")
        return
    region = v.section.location or v.stack.get("location")
    offered = region_offers("azure", region, size)
    if offered is False:
        yield Finding("", "error", f"{size} is not offered in {region} (no VM meter there in the catalog)",
                      fix="choose a size the region offers (`cloudft catalog refresh --provider azure --region "
                          f"{region}`, then `cloudft catalog list`), or another azure.location",
                      field="compute.instance_type")
    elif offered is None:
        yield Finding("", "info", f"whether {region or 'the workspace region'} offers {size} is not known to the "
                                  "catalog (not verified)",
                      fix=f"`cloudft catalog refresh --provider azure --region {region or '<region>'}` records it")


@rule("azure.environment-contents", SRC_ENVIRONMENT)
def environment_contents(v: AzureView) -> Iterator[Finding]:
    from .runtime import cuda_mismatch

    env = v.section.environment
    has = env.packages()
    what = f"azure.environment.{'image' if env.image else 'reference'}"
    if v.spec.secrets and "azure-identity" not in has:
        yield Finding("", "error", f"the Key Vault launcher imports azure-identity, which {what} does not provide",
                      fix="add azure-identity to the image and list it in azure.environment.provides, or use the "
                          "default environment (base_image + requirements) or build: true",
                      field=f"{what}")
    if "mlflow" not in has and any(st.run_config.tracking.mlflow for st in v.plan.stages):
        yield Finding("", "error", f"tracking.mlflow is on but {what} does not provide mlflow (transformers fails "
                                   "at Trainer start)",
                      fix="add azureml-mlflow to the image and list mlflow in azure.environment.provides, or turn "
                          "tracking.mlflow off", field="tracking.mlflow")
    if not (env.image or env.reference or env.build):
        why = cuda_mismatch(env.base_image)
        if why:
            yield Finding("", "warning", f"{why}: torch is pinned to the PyPI build, which may not match it",
                          fix="use a base image named ...-cudaX.Y-... with X.Y in 11.8, 12.6, 12.8",
                          field="azure.environment.base_image")


@rule("azure.endpoint-sku", f"{SRC_ENDPOINT_SKUS}; planner memory estimate (docs/planner.md)")
def endpoint_sku(v: AzureView) -> Iterator[Finding]:
    sku = v.section.deploy.instance_type
    if not sku:
        return
    for f in endpoint_findings(sku, v.spec.base_model, v.spec.base_dir, tokens=SERVING_TOKENS):
        yield Finding("", "warning" if f.severity == "error" else f.severity, f.message, fix=f.fix,
                      field="azure.deploy.instance_type")  # a deploy concern: refused at `cloudft deploy`


def endpoint_findings(sku: str, base_model: str, base_dir: Any = None, tokens: int = SERVING_TOKENS) -> list[Finding]:
    """Can a managed online endpoint of `sku` serve `base_model` the way score.py does (whole model, one GPU)?"""
    from ...planner.arch import resolve_arch
    from ...planner.catalog import find_instance
    from ...planner.memory import estimate_serving_memory

    try:
        inst = find_instance("azure", sku)
    except CloudftError:
        return [Finding("azure.endpoint-sku", "warning", f"{sku} is not in cloudft's Azure catalog: whether managed "
                                                         "online endpoints take it and whether the model fits are "
                                                         "not checked", fix=f"see {SRC_ENDPOINT_SKUS}")]
    out = []
    if inst.online_endpoint is not True:
        out.append(Finding("azure.endpoint-sku", "error", f"{sku} is not in the managed online endpoints SKU list",
                           fix=f"choose a size from {SRC_ENDPOINT_SKUS}", source=SRC_ENDPOINT_SKUS))
    arch = resolve_arch(base_model, base_dir).arch
    if arch is None:
        out.append(Finding("azure.endpoint-sku", "info", f"the size of {base_model} is unknown: whether it fits "
                                                          f"one {inst.gpu} is not checked"))
        return out
    need = estimate_serving_memory(arch, tokens=tokens)
    if need["peak_gb"] > inst.usable_gpu_memory_gb:
        out.append(Finding(
            "azure.endpoint-sku", "error",
            f"{base_model} needs about {need['peak_gb']:.1f} GB on one GPU to serve (16-bit weights "
            f"{need['weights_gb']:.1f} GB + KV cache for {tokens} tokens + overhead); one {inst.gpu} of {sku} has "
            f"{inst.usable_gpu_memory_gb:.1f} GB usable (score.py loads the model onto a single GPU)",
            fix="choose a SKU with a larger GPU (see `cloudft catalog list --provider azure`), or serve merged, "
                "quantized weights", source="planner memory estimate (docs/planner.md)"))
    return out


RULES = (identity_vs_compute, secrets_need_a_managed_identity, roles_granted, low_priority, vm_size,
         environment_contents, endpoint_sku)
