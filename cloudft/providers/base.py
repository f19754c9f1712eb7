"""The interface every provider implements (local, aws, azure), like SkyPilot's one class per cloud."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ..errors import CloudftError
from ..handles import RunHandle

if TYPE_CHECKING:  # keep imports light
    from ..plan import Plan
    from ..preflight import Finding
    from ..registry import RunRecord
    from ..serving.smoke import SmokeReport
    from ..spec import JobSpec
    from ..stages import StageContext, StageLocations


class Provider(ABC):
    """A place where train_entry runs. Each method takes/returns provider-neutral objects."""

    name: str = ""
    #: `--stack NAME`: a Pulumi stack (or outputs JSON file) whose outputs fill the provider's section
    stack: Optional[str] = None
    #: modules `submit` needs, each with the pip extra that installs it
    requires: tuple[tuple[str, str], ...] = ()
    #: the typed handle this provider records for its runs
    handle_type: type[RunHandle] = RunHandle

    def handle(self, run: "RunRecord") -> RunHandle:
        """The run's typed handle (a registry row from an earlier cloudft, which kept it in `meta`, is read too)."""
        from pydantic import ValidationError

        raw = run.handle or {k: v for k, v in run.meta.items() if k in self.handle_type.model_fields}
        try:
            return self.handle_type.model_validate(raw)
        except ValidationError as exc:
            raise CloudftError(f"run {run.run_id}: its registry entry is unreadable ({exc.error_count()} problem(s): "
                               f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']})",
                               hint="it was written by another cloudft version; submit the spec again") from None

    def check_installed(self) -> None:
        """Raise MissingExtraError naming the extra when a module the provider needs is absent (no import)."""
        import importlib.util

        from ..errors import MissingExtraError

        for module, extra in self.requires:
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError(extra, module)

    @property
    def capabilities(self):
        """What this provider can do (cloudft.capabilities.CAPABILITIES)."""
        from ..capabilities import capabilities_of

        return capabilities_of(self.name)

    def validate(self, spec: "JobSpec") -> None:
        """Refuse what the provider cannot do (capabilities), then check its own section of the spec (raises
        SpecError with file:line:col). Must not call the cloud. Subclasses extend `validate_section`."""
        from ..capabilities import check_capabilities
        from ..errors import SpecError
        from ..preflight import problem

        found = check_capabilities(spec, self.name)
        if found:
            raise SpecError([problem(spec, f) for f in found])
        self.validate_section(spec)

    def validate_section(self, spec: "JobSpec") -> None:
        """The provider's own section (`aws:` / `azure:`): shape and values, no cloud calls."""

    def check_submit(self, spec: "JobSpec") -> None:
        """What submitting (not planning) needs on top of `validate`, e.g. a bucket and a role (raises)."""

    def preflight(self, plan: "Plan") -> "list[Finding]":
        """The provider's documented rules checked on the plan (cloudft.preflight); no cloud calls. The capability
        checks are added by `checks(plan)`; providers override this with their own rules."""
        return []

    def checks(self, plan: "Plan") -> "list[Finding]":
        """Everything checked before a submit: what the provider cannot do (capabilities), then its own rules."""
        from ..capabilities import check_capabilities

        return check_capabilities(plan.spec, self.name) + self.preflight(plan)

    def locate(self, spec: "JobSpec", run_id: str, stage: "StageContext") -> "StageLocations":
        """Where one stage reads and writes: output, checkpoint and data as the trainer sees them (and, for cloud
        providers, the URIs behind them). `stage` carries its resolved data, work key and links."""
        from ..stages import StageLocations

        return StageLocations()

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
        """Serve the run's output (after checking, before creating anything, that this target can serve it:
        cloudft.serving.compat); returns what deploy reports, with at least `endpoint` and `mode`."""
        raise CloudftError(f"'deploy' is not available for the {self.name} provider")

    def invoke(self, endpoint: str, prompt: str, **options: Any) -> str:
        """One greedy completion of `prompt` (options: max_new_tokens; base=True asks the bare base model)."""
        raise CloudftError(f"'invoke' is not available for the {self.name} provider")

    def smoke(self, run: "RunRecord", deployed: dict[str, Any], prompt: str) -> "SmokeReport":
        """The smoke test after deploy: by default the endpoint's greedy answer must differ from its bare base's
        (cloudft.serving.smoke); providers that have the adapter at hand compare with a local reference."""
        from ..serving.smoke import compare_with_base

        return compare_with_base(self, deployed["endpoint"], prompt, has_base=deployed.get("mode") == "adapter")

    def undeploy(self, endpoint: str, **options: Any) -> None:
        raise CloudftError(f"'undeploy' is not available for the {self.name} provider")
