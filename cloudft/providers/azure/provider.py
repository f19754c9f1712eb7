"""`AzureProvider`: the Provider interface on Azure ML (see docs/azure.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ...errors import CloudftError
from ..base import Provider
from .handle import AzureHandle
from .section import AzureSection, section_with_stack

if TYPE_CHECKING:
    from ...plan import Plan
    from ...preflight import Finding
    from ...registry import RunRecord
    from ...spec import JobSpec
    from ...stages import StageContext, StageLocations


class AzureProvider(Provider):
    """Azure ML backend. `credential` / `transport` are injectable (tests); real runs use DefaultAzureCredential."""

    name = "azure"
    requires = (("azure.ai.ml", "azure"), ("azure.identity", "azure"))
    handle_type = AzureHandle

    def __init__(self, credential: Any = None, transport: Any = None, poll_s: float = 15.0):
        self.credential = credential
        self.transport = transport
        self.poll_s = poll_s
        self._section: Optional[AzureSection] = None
        self.stack_outputs: dict[str, Any] = {}  # what `--stack` told us (roles granted, cluster, network)

    # -- spec ---------------------------------------------------------------------------------------
    def section(self, spec: "JobSpec") -> AzureSection:
        """The `azure:` section (errors located in the YAML), with `--stack` outputs filling unset keys."""
        section = spec.provider_section("azure", AzureSection)
        if self.stack:
            from ...infra.outputs import stack_outputs

            self.stack_outputs = stack_outputs("azure", self.stack) or {}
            section = section_with_stack(section.model_dump(exclude_unset=True), self.stack_outputs, self.stack)
        return section

    def validate_section(self, spec: "JobSpec") -> None:
        # keyvault:NAME references are checked when the spec loads, with the launcher's own rule (cloudft.spec);
        # other reference kinds are refused by the capability check
        self._section = self.section(spec)
        if spec.secrets and not self._section.key_vault:
            raise CloudftError("the spec has Key Vault secrets but azure.key_vault is not set",
                               hint="set azure.key_vault (or pass --stack NAME)")

    def _sec(self, spec: "JobSpec") -> AzureSection:
        if self._section is None:
            self.validate_section(spec)
        return self._section

    def preflight(self, plan: "Plan") -> "list[Finding]":
        """Azure's documented rules (cloudft/providers/azure/preflight.py) on the plan, the resolved section and,
        with --stack, what the stack granted and built."""
        from ...preflight import run_rules
        from .preflight import RULES, AzureView

        return run_rules(RULES, AzureView(plan, self._sec(plan.spec), dict(self.stack_outputs)))

    def locate(self, spec: "JobSpec", run_id: str, stage: "StageContext") -> "StageLocations":
        from .entities import stage_locations

        return stage_locations(spec, self._sec(spec), run_id, stage)

    def client(self, section: AzureSection):
        from .client import make_client

        return make_client(section, credential=self.credential, transport=self.transport)

    # -- submit -------------------------------------------------------------------------------------
    def submit(self, plan: "Plan", *, dry_run: bool = False, **options: Any) -> "RunRecord | list[dict]":
        from .submit import dry_run as write_dry_run
        from .submit import submit

        section = self._sec(plan.spec)
        if dry_run:
            return write_dry_run(plan, section, options.get("out_dir"))
        return submit(plan, section, self.client(section))

    # -- operate ------------------------------------------------------------------------------------
    def _run_client(self, run: "RunRecord"):
        section = AzureSection.model_validate(self.handle(run).azure)
        return self.client(section)

    def status(self, run: "RunRecord") -> "RunRecord":
        from .operate import refresh

        return refresh(self._run_client(run), run)

    def logs(self, run: "RunRecord", follow: bool = False) -> Iterator[str]:
        from .operate import stream_logs

        return stream_logs(self._run_client(run), run, follow=follow, poll_s=self.poll_s)

    def stop(self, run: "RunRecord") -> "RunRecord":
        from .operate import cancel

        return cancel(self._run_client(run), run)

    def artifacts(self, run: "RunRecord", dest: Optional[Path] = None) -> Path:
        from .operate import download

        return download(self._run_client(run), run, dest)

    # -- serve --------------------------------------------------------------------------------------
    def deploy(self, run: "RunRecord", **options: Any) -> dict[str, Any]:
        from .deploy import deploy

        return deploy(self._run_client(run), run, **options)

    def invoke(self, endpoint: str, prompt: str, **options: Any) -> str:
        from .deploy import invoke

        return invoke(self._endpoint_client(endpoint), endpoint, prompt, **options)

    def undeploy(self, endpoint: str, **options: Any) -> None:
        from .deploy import undeploy

        undeploy(self._endpoint_client(endpoint), endpoint)

    def _endpoint_client(self, endpoint: str):
        """The workspace of the run deployed to `endpoint` (from the registry), else of the environment."""
        from ...registry import Registry

        for rec in Registry().list(limit=500, provider=self.name):
            if rec.meta.get("endpoint") == endpoint:
                return self._run_client(rec)
        import os

        section = AzureSection(subscription_id=os.environ.get("AZURE_SUBSCRIPTION_ID"),
                               resource_group=os.environ.get("AZURE_RESOURCE_GROUP"),
                               workspace=os.environ.get("AZURE_ML_WORKSPACE"))
        try:
            return self.client(section)
        except CloudftError as exc:
            raise CloudftError(f"no azure run deployed to endpoint '{endpoint}' is known here",
                               hint="set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZURE_ML_WORKSPACE") from exc
