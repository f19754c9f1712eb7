"""The interface every provider implements (local, aws, azure), like SkyPilot's one class per cloud."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ..errors import CloudftError

if TYPE_CHECKING:  # keep imports light
    from ..plan import Plan
    from ..registry import RunRecord
    from ..spec import JobSpec, StageSpec


class Provider(ABC):
    """A place where train_entry runs. Each method takes/returns provider-neutral objects."""

    name: str = ""
    #: `--stack NAME`: a Pulumi stack (or outputs JSON file) whose outputs fill the provider's section
    stack: Optional[str] = None
    #: modules `submit` needs, each with the pip extra that installs it
    requires: tuple[tuple[str, str], ...] = ()

    def check_installed(self) -> None:
        """Raise MissingExtraError naming the extra when a module the provider needs is absent (no import)."""
        import importlib.util

        from ..errors import MissingExtraError

        for module, extra in self.requires:
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError(extra, module)

    def validate(self, spec: "JobSpec") -> None:
        """Check the provider's own section of the spec (raises SpecError). Must not call the cloud."""

    def locate(self, spec: "JobSpec", run_id: str, index: int, stage: "StageSpec",
               data: dict[str, Any]) -> dict[str, str]:
        """Resolved locations for one stage: output, checkpoint and data as the trainer sees them.

        `data` is the resolved data of the stage (cloudft.data.resolve.resolve_stage_data): local canonical paths and
        their content versions. See plan.build_plan for the keys that reach the run config.
        """
        return {}

    @abstractmethod
    def submit(self, plan: "Plan", *, dry_run: bool = False, **options: Any) -> "RunRecord | list[dict]":
        """Start the plan. Returns the registry record (or, for dry runs, the requests it would send)."""

    @abstractmethod
    def status(self, run: "RunRecord") -> "RunRecord":
        """Refresh the run's status from the backend and return the updated record."""

    @abstractmethod
    def logs(self, run: "RunRecord", follow: bool = False) -> Iterator[str]:
        """Yield log lines (following until the run ends when `follow`)."""

    @abstractmethod
    def stop(self, run: "RunRecord") -> "RunRecord":
        """Ask the run to stop (it checkpoints first where it can)."""

    def artifacts(self, run: "RunRecord", dest: Optional[Path] = None) -> Path:
        """Where the run's outputs are (downloading them first for cloud runs)."""
        raise CloudftError(f"'artifacts' is not available for the {self.name} provider")

    def deploy(self, run: "RunRecord", **options: Any) -> dict[str, Any]:
        raise CloudftError(f"'deploy' is not available for the {self.name} provider")

    def invoke(self, endpoint: str, prompt: str, **options: Any) -> str:
        raise CloudftError(f"'invoke' is not available for the {self.name} provider")

    def undeploy(self, endpoint: str, **options: Any) -> None:
        raise CloudftError(f"'undeploy' is not available for the {self.name} provider")
