"""What a stage reads, writes and hands on, as typed values shared by the plan and the providers.

The plan computes a `StageContext` for each stage (its resolved data, its work key, what it starts from) and asks
the provider to `locate` it; the provider answers with `StageLocations`. Light module: no provider, no plan import.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal, Optional

if TYPE_CHECKING:
    from .data.resolve import ResolvedData

#: What a stage's output directory holds. "adapter": a PEFT adapter on the base model; "full_weights": a whole
#: model (full fine-tuning) that later stages load as their base; "reward_model": a sequence-classification model.
Artifact = Literal["adapter", "full_weights", "reward_model"]


def stage_artifact(method: str, peft_type: str) -> Artifact:
    """What a stage of `method` with `peft.type` writes (train_entry writes the same word into metrics.json)."""
    if method == "reward":
        return "reward_model"
    return "full_weights" if peft_type == "none" else "adapter"


@dataclass(frozen=True)
class StageLinks:
    """Which earlier stages feed a stage, and how.

    `init_from`: the stage whose output this one starts from, `init_kind` what that output is (an adapter to keep
    training, or full weights that replace base_model); `reward_from`: the reward model an rl stage scores with."""

    init_from: Optional[int] = None
    init_kind: Optional[Artifact] = None
    reward_from: Optional[int] = None


@dataclass(frozen=True)
class StageContext:
    """What the plan tells a provider about one stage so it can place it."""

    index: int
    method: str
    data: "ResolvedData"
    work_key: str
    links: StageLinks
    names: tuple[str, ...]  # every stage's "INDEX-METHOD", for paths of earlier stages

    @property
    def name(self) -> str:
        return self.names[self.index]


@dataclass(frozen=True)
class StageLocations:
    """Where a stage's inputs and outputs are.

    The first group is what train_entry sees (paths inside the container, datastore URIs, or local paths) and goes
    into the run config under the same names; the second is where the provider puts or finds them from outside."""

    output_dir: Optional[str] = None
    checkpoint_dir: Optional[str] = None
    data_dir: Optional[str] = None
    train: Optional[str] = None
    validation: Optional[str] = None
    init_adapter: Optional[str] = None
    init_model: Optional[str] = None
    reward_model: Optional[str] = None
    # -- outside view ------------------------------------------------------------------------------
    stage_dir: Optional[str] = None  # local: the stage's folder (run.json, output/)
    train_uri: Optional[str] = None  # aws: the S3 objects behind the channels
    validation_uri: Optional[str] = None
    output_uri: Optional[str] = None
    checkpoint_uri: Optional[str] = None

    def outputs(self) -> dict[str, str]:
        """The values for the run config's `outputs` section (train_entry.config.OutputsConfig)."""
        from train_entry.config import OutputsConfig

        return {f: getattr(self, f) for f in OutputsConfig.model_fields if getattr(self, f, None)}

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def but(self, **changes: Optional[str]) -> "StageLocations":
        """A copy with `changes`."""
        return replace(self, **changes)
