"""The `azure:` section of a job spec (validated only when `--provider azure` is used).

Keys shared with the Pulumi stack outputs keep the stack's names (`subscription_id`, `resource_group`,
`workspace`, `location`, `compute`, `key_vault`, `storage_account`, `registry`, `endpoint_name`); the
rest are provider-only settings. Stack outputs fill what the spec leaves unset.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from train_entry.config import StrictModel

#: Public GPU base image with CUDA + OpenMPI; train_entry's pip requirements are added on top.
DEFAULT_TRAIN_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"
#: Azure ML inference base image (ships the azureml-inference-server that calls score.py).
DEFAULT_SERVE_IMAGE = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cuda11.8-gpu-inference:latest"

SHARED_KEYS = ("subscription_id", "resource_group", "workspace", "location", "compute", "key_vault",
               "storage_account", "registry", "endpoint_name")


class EnvironmentSection(StrictModel):
    """How the training container is made. One of: a prebuilt image (recommended), an image + train_entry's
    requirements (default), or a Docker build of `train_entry/Dockerfile`. An `azureml:NAME:VERSION` reference
    uses an environment that already exists in the workspace."""

    image: Optional[str] = Field(None, description="Prebuilt image with train_entry's dependencies (e.g. ACR).")
    base_image: str = Field(DEFAULT_TRAIN_IMAGE, description="Base image when pip requirements are layered on top.")
    build: bool = Field(False, description="Build train_entry/Dockerfile in the workspace's ACR instead.")
    reference: Optional[str] = Field(None, pattern=r"^azureml:", description="An existing environment, azureml:NAME:VERSION.")
    name: str = Field("cloudft-train", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")

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
    identity_client_id: Optional[str] = Field(None, description="Client id of a user-assigned managed identity.")
    shm_size: str = Field("32g", pattern=r"^\d+[kmg]$")
    deploy: DeploySection = Field(default_factory=DeploySection)

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
