"""The `azure:` section of a job spec (validated only when `--provider azure` is used).

Keys shared with the Pulumi stack outputs keep the stack's names (`subscription_id`, `resource_group`,
`workspace`, `location`, `compute`, `key_vault`, `storage_account`, `registry`, `endpoint_name`); the
rest are provider-only settings. Stack outputs fill what the spec leaves unset.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, ValidationError, field_validator, model_validator

from train_entry.config import StrictModel

from ...errors import CloudftError

#: Public GPU base image with CUDA 12.6 + OpenMPI (Azure/AzureML-Containers); train_entry's pip requirements and a
#: torch built for the same CUDA (cloudft.providers.azure.runtime) are added on top.
DEFAULT_TRAIN_IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-cuda12.6-ubuntu24.04:latest"
#: Azure ML inference base image (ships the azureml-inference-server that calls score.py).
DEFAULT_SERVE_IMAGE = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cuda11.8-gpu-inference:latest"

SHARED_KEYS = ("subscription_id", "resource_group", "workspace", "location", "compute", "key_vault",
               "storage_account", "registry", "endpoint_name", "identity_client_id", "endpoint_identity_id",
               "endpoint_identity_client_id")

#: What the Key Vault launcher and MLflow tracking need in the training environment (beyond train_entry's own).
RuntimePackage = Literal["mlflow", "azure-identity"]
_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UAI_ID = (r"^/subscriptions/[0-9a-fA-F-]{36}/resource[gG]roups/[^/?#\s]{1,90}/providers/"
           r"Microsoft\.ManagedIdentity/userAssignedIdentities/[A-Za-z0-9][A-Za-z0-9_-]{2,127}$")


class EnvironmentSection(StrictModel):
    """How the training container is made. One of: a prebuilt image (recommended), an image + train_entry's
    requirements (default), or a Docker build of `train_entry/Dockerfile`. An `azureml:NAME:VERSION` reference
    uses an environment that already exists in the workspace."""

    image: Optional[str] = Field(None, description="Prebuilt image with train_entry's dependencies (e.g. ACR).")
    base_image: str = Field(DEFAULT_TRAIN_IMAGE, description="Base image when pip requirements are layered on top.")
    build: bool = Field(False, description="Build train_entry/Dockerfile in the workspace's ACR instead.")
    reference: Optional[str] = Field(None, pattern=r"^azureml:", description="An existing environment, azureml:NAME:VERSION.")
    name: str = Field("cloudft-train", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
    provides: list[RuntimePackage] = Field(
        default_factory=list,
        description="For `image` / `reference`: what it holds beyond train_entry's requirements. cloudft turns on "
                    "MLflow tracking only with mlflow, and Key Vault secrets need azure-identity.")

    def packages(self) -> set[str]:
        """What the training environment can import for cloudft's extras: the conda and build forms get both
        (cloudft adds them); a prebuilt image or an existing environment only what `provides` declares."""
        if self.image or self.reference:
            return set(self.provides)
        return {"mlflow", "azure-identity"}

    @model_validator(mode="after")
    def _one_kind(self) -> "EnvironmentSection":
        chosen = [k for k, v in (("image", self.image), ("build", self.build), ("reference", self.reference)) if v]
        if len(chosen) > 1:
            raise ValueError(f"choose one of image, build, reference (got {', '.join(chosen)})")
        return self


class DeploySection(StrictModel):
    """Managed online endpoint settings for `cloudft deploy`."""

    instance_type: Optional[str] = Field(None, description="GPU SKU, e.g. Standard_NC24ads_A100_v4.")
    instance_count: int = Field(1, ge=1, le=20)
    image: str = Field(DEFAULT_SERVE_IMAGE, description="Inference base image (needs azureml-inference-server).")
    auth_mode: Literal["key", "aml_token", "aad_token"] = "key"
    request_timeout_ms: int = Field(90000, ge=1000, le=180000)
    max_concurrent_requests_per_instance: int = Field(1, ge=1)
    readiness_initial_delay_s: int = Field(600, ge=10, description="Loading base + adapter takes minutes.")


class AzureSection(StrictModel):
    """Azure ML settings. Shared keys come from the spec or a Pulumi stack's outputs (`--stack`)."""

    subscription_id: Optional[str] = None
    resource_group: Optional[str] = None
    workspace: Optional[str] = None
    location: Optional[str] = None
    compute: Optional[str] = Field(None, description="Compute cluster name; unset or 'serverless' for serverless.")
    key_vault: Optional[str] = Field(None, description="Key Vault holding the secrets named in `secrets:`.")
    storage_account: Optional[str] = None
    registry: Optional[str] = Field(None, description="Azure ML registry (shared models/environments).")
    endpoint_name: Optional[str] = None
    # provider-only keys
    datastore: str = Field("workspaceblobstore", description="Datastore for outputs and checkpoints.")
    experiment: Optional[str] = Field(None, description="Experiment name (default: the spec name).")
    environment: EnvironmentSection = Field(default_factory=EnvironmentSection)
    job_tier: Optional[Literal["Spot", "Basic", "Standard", "Premium"]] = Field(
        None, description="Serverless job tier (default: Spot when compute.spot, else Standard).")
    priority: Optional[Literal["low", "medium", "high"]] = None
    identity: Optional[Literal["user", "managed", "aml_token"]] = Field(
        None, description="Job identity (default: managed when secrets are used, else the platform default).")
    identity_client_id: Optional[str] = Field(
        None, pattern=_GUID, description="Client id of the user-assigned identity jobs run as (serverless needs one "
                                         "attached to the workspace; the stack output of the same name).")
    endpoint_identity_id: Optional[str] = Field(
        None, pattern=_UAI_ID, description="ARM id of the user-assigned identity online endpoints run as.")
    endpoint_identity_client_id: Optional[str] = Field(None, pattern=_GUID,
                                                       description="Client id of that endpoint identity.")
    shm_size: str = Field("32g", pattern=r"^\d+[kmg]$")
    deploy: DeploySection = Field(default_factory=DeploySection)

    @field_validator("key_vault")
    @classmethod
    def _vault(cls, value: Optional[str]) -> Optional[str]:
        """Only a vault name or https://NAME.vault.azure.net: the job sends a bearer token to that host."""
        if value is None:
            return None
        from .keyvault import vault_name

        return vault_name(value)

    @property
    def serverless(self) -> bool:
        return self.compute in (None, "", "serverless")

    def workspace_ids(self) -> dict[str, str]:
        """The three ids MLClient needs; a CloudftError naming what is missing otherwise."""
        from ...errors import CloudftError

        missing = [k for k in ("subscription_id", "resource_group", "workspace") if not getattr(self, k)]
        if missing:
            raise CloudftError(
                f"azure: {', '.join(missing)} not set",
                hint="add them to the spec's azure: section, or pass --stack NAME to read a Pulumi stack's outputs",
            )
        return {"subscription_id": self.subscription_id, "resource_group_name": self.resource_group,
                "workspace_name": self.workspace}


def merge_stack(raw: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """Stack outputs under the spec's values: the spec wins, the stack fills the shared keys it leaves unset."""
    merged = {k: v for k, v in outputs.items() if k in SHARED_KEYS and v not in (None, "")}
    merged.update({k: v for k, v in raw.items() if v is not None})
    return merged


def section_with_stack(raw: dict[str, Any], outputs: dict[str, Any], source: str) -> AzureSection:
    """The section with stack outputs filled in; a stack output that breaks a rule is named (no traceback)."""
    try:
        return AzureSection.model_validate(merge_stack(raw, outputs))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise CloudftError(f"azure: stack output {key} from {source} is invalid: {first['msg']}",
                           hint=f"fix the stack (or set azure.{key} in the spec, which wins)") from None
