"""The Azure run handle: what `cloudft status/logs/stop/artifacts/deploy` need to find an Azure ML job again."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from ...handles import RunHandle


class AzureHandle(RunHandle):
    """An Azure ML command job or pipeline job (the registry's external_id is its name) and its workspace."""

    job_type: Literal["command", "pipeline"]
    azure: dict[str, Any] = Field(..., description="The resolved azure: section (workspace, identity, vault).")
    outputs: dict[str, str] = Field(default_factory=dict, description="Stage INDEX-METHOD → its output folder URI.")
    assets: dict[str, list[str]] = Field(default_factory=dict, description="Data/environment assets created, reused.")
    secret_env: dict[str, str] = Field(default_factory=dict, description="Env vars naming the Key Vault secrets.")
    studio_url: Optional[str] = None
    instance_type: Optional[str] = None
    instance_count: int = 1
