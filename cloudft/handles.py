"""Typed run handles: what a provider records about a run it started, to find it again.

The registry stores a handle as JSON (`runs.handle`); each provider reads it back as its own model
(`Provider.handle(record)`): LocalHandle here, AwsHandle and AzureHandle in their provider packages.
Live status details that change while a run goes on (current stage, failure reason, ...) stay in `RunRecord.meta`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from pydantic import BaseModel, ConfigDict, Field

from train_entry.config import PeftConfig

from .spec import ServeConfig

if TYPE_CHECKING:
    from .plan import Plan


class RunHandle(BaseModel):
    """What every provider records: the stages, the data versions, the base model, what the run produced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: tuple[str, ...] = Field(..., description="Each stage's INDEX-METHOD, in order.")
    dataset_versions: dict[str, str] = Field(default_factory=dict)
    base_model: str = ""
    artifact: Optional[str] = Field(None, description="What the last stage writes: adapter, full_weights, reward_model.")
    peft: Optional[PeftConfig] = Field(None, description="The run's PEFT settings (deploy checks what can serve it).")
    merged: bool = Field(False, description="The run also writes merged full weights beside its adapter "
                                            "(export.merge), so a server that cannot load the adapter serves those.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="The spec's serving limits.")

    @classmethod
    def common(cls, plan: "Plan") -> dict:
        """The fields every provider's handle takes from the plan."""
        return {"stages": tuple(s.name for s in plan.stages),
                "dataset_versions": dict(plan.stages[0].run_config.dataset_versions),
                "base_model": plan.spec.base_model, "artifact": plan.stages[-1].produces, "peft": plan.spec.peft,
                "merged": plan.spec.export.merge, "serve": plan.spec.serve}


class LocalHandle(RunHandle):
    """A local run: its folder is `RunRecord.run_dir`, its supervisor `RunRecord.pid`."""
