"""The real entry points: infra/<provider>/__main__.py with its example Pulumi.dev.yaml, under mocks; the CD file."""

from __future__ import annotations

import json
import runpy

import pytest
import yaml
from infra_fixtures import REPO, run_program

from cloudft.infra.contract import OUTPUT_KEYS
from infra.components import rules

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _stack_config(project: str, stack: str = "dev") -> dict[str, str]:
    """`Pulumi.<stack>.yaml` as the engine hands config to a program (objects as JSON strings)."""
    cfg = yaml.safe_load((REPO / "infra" / project / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()}


@pytest.mark.parametrize("project, required", [("aws", rules.REQUIRED_AWS), ("azure", rules.REQUIRED_AZURE)])
def test_main_runs_with_the_example_stack_config(project, required, monkeypatch):
    exported: dict = {}
    monkeypatch.setattr("pulumi.export", lambda k, v: exported.__setitem__(k, v))

    def program():
        runpy.run_path(str(REPO / "infra" / project / "__main__.py"), run_name="__main__")
        return exported

    mocks, outputs = run_program(program, config=_stack_config(project), stack="dev")
    assert set(OUTPUT_KEYS[project]) <= set(outputs)
    assert rules.check_stack(mocks.triples(), required) == []
    if project == "aws":  # values from Pulumi.dev.yaml reached the resources
        sts = json.loads(next(r for r in mocks.of_type("iam/rolePolicy:RolePolicy")
                              if r.name.endswith("-execution")).inputs["policy"])["Statement"]
        secrets = next(s for s in sts if s["Sid"] == "ReadNamedSecrets")
        assert secrets["Resource"] == ["arn:aws:secretsmanager:us-east-1:123456789012:secret:cloudft/hf-token-AbCdEf"]
        assert mocks.one("BucketLifecycleConfiguration").inputs["rules"][0]["expiration"]["days"] == 14
        assert outputs["bucket"].startswith("cloudft-dev-sagemaker-")
    else:
        aml = mocks.one(":Compute").inputs["properties"]["properties"]
        assert aml["vmPriority"] == "LowPriority" and aml["scaleSettings"]["nodeIdleTimeBeforeScaleDown"] == "PT900S"


def test_pulumi_projects_use_the_repository_venv():
    for project, name in (("aws", "cloudft-aws"), ("azure", "cloudft-azure")):
        meta = yaml.safe_load((REPO / "infra" / project / "Pulumi.yaml").read_text())
        assert meta["name"] == name and meta["runtime"]["name"] == "python"
        assert (REPO / "infra" / project / meta["runtime"]["options"]["virtualenv"] / "bin").is_dir()


def test_cd_workflow_previews_on_pull_requests_and_updates_on_main():
    wf = yaml.safe_load((REPO / "templates" / "ci" / "infra.yml").read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    steps = wf["jobs"]["pulumi"]["steps"]
    pulumi_steps = {s["with"]["command"]: s for s in steps if str(s.get("uses", "")).startswith("pulumi/actions@")}
    assert set(pulumi_steps) == {"preview", "up"}
    assert "pull_request" in pulumi_steps["preview"]["if"] and "refs/heads/main" in pulumi_steps["up"]["if"]
    assert all(s["with"]["work-dir"] == "infra/${{ matrix.project }}" for s in pulumi_steps.values())
    assert wf["jobs"]["pulumi"]["strategy"]["matrix"]["project"] == ["aws", "azure"]
    assert any("pytest tests/test_infra_" in str(s.get("run", "")) for s in steps)
