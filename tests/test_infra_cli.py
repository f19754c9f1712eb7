"""`cloudft infra` and `stack_outputs`: JSON outputs offline, the Automation API path (faked), a missing Pulumi CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest
from infra_fixtures import REPO

from cloudft.errors import CloudftError
from cloudft.infra import stack_outputs, workspace
from cloudft.infra.pulumi_cli import PulumiCliMissing

CLOUDFT = [sys.executable, "-m", "cloudft.cli.main"]
OUTPUTS = {"region": "us-east-1", "role_arn": "arn:aws:iam::1:role/r", "bucket": "b", "prefix": "cloudft",
           "kms_key_arn": "arn:aws:kms:us-east-1:1:key/k", "subnets": [], "security_group_ids": [],
           "repository_url": "1.dkr.ecr.us-east-1.amazonaws.com/r", "workteam_arn": None, "endpoint_name": None,
           "user_pool_id": "extra"}


def _no_pulumi_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI")}
    env.update(PATH=str(tmp_path), HOME=str(tmp_path), PYTHONPATH=str(REPO))
    return env


@pytest.fixture
def outputs_file(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    return path


def test_stack_outputs_from_json_file_keeps_contract_keys_with_values(outputs_file):
    got = stack_outputs("aws", str(outputs_file))
    assert got == {k: OUTPUTS[k] for k in ("region", "role_arn", "bucket", "prefix", "kms_key_arn",
                                           "repository_url")}


def test_stack_outputs_file_errors(tmp_path, outputs_file):
    with pytest.raises(CloudftError, match="does not exist"):
        stack_outputs("aws", str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(CloudftError, match="JSON object"):
        stack_outputs("aws", str(tmp_path / "bad.json"))
    (tmp_path / "masked.json").write_text(json.dumps({"bucket": "b", "role_arn": "[secret]"}))
    with pytest.raises(CloudftError, match="masked secret") as exc:
        stack_outputs("aws", str(tmp_path / "masked.json"))
    assert "--show-secrets" in exc.value.hint
    with pytest.raises(CloudftError, match="unknown provider"):
        stack_outputs("gcp", str(outputs_file))


def test_azure_contract_from_file(tmp_path):
    path = tmp_path / "az.json"
    path.write_text(json.dumps({"subscription_id": "s", "resource_group": "rg", "workspace": "ws", "compute": "gpu",
                                "registry": {"value": "acr", "secret": False}, "bucket": "not-azure"}))
    assert stack_outputs("azure", str(path)) == {"subscription_id": "s", "resource_group": "rg", "workspace": "ws",
                                                 "compute": "gpu", "registry": "acr"}


class FakeStack:
    def __init__(self, fail: Exception | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail

    def outputs(self):
        ov = types.SimpleNamespace
        return {"bucket": ov(value="b", secret=False), "role_arn": ov(value="arn:secret-role", secret=True),
                "endpoint_name": ov(value=None, secret=False)}

    def _op(self, name, **kwargs):
        self.calls.append((name, kwargs))
        if self.fail:
            raise self.fail
        return types.SimpleNamespace(summary=types.SimpleNamespace(resource_changes={"create": 3}), outputs={})

    def preview(self, **kw):
        return self._op("preview", **kw)

    def up(self, **kw):
        return self._op("up", **kw)


def test_stack_name_reads_outputs_through_automation_api(monkeypatch):
    opened = []
    monkeypatch.setattr(workspace, "open_stack", lambda p, s, **kw: opened.append((p, s, kw)) or FakeStack())
    got = stack_outputs("aws", "dev")
    assert got == {"bucket": "b", "role_arn": "arn:secret-role"}  # secret unwrapped in memory
    assert opened[0][:2] == ("aws", "dev")


def test_outputs_command_masks_secrets(monkeypatch, capsys):
    from cloudft.cli.main import main

    monkeypatch.setattr(workspace, "open_stack", lambda p, s, **kw: FakeStack())
    main(["infra", "outputs", "--provider", "aws", "--stack", "dev", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"bucket": "b", "role_arn": "[secret]", "endpoint_name": None}


def test_preview_passes_policy_pack_and_reports_failures(monkeypatch):
    from pulumi import automation as auto

    stack = FakeStack()
    monkeypatch.setattr(workspace, "open_stack", lambda p, s, **kw: stack)
    workspace.run_operation("azure", "dev", "preview", on_output=None, policy_packs=["/x/policy"])
    assert stack.calls == [("preview", {"on_output": None, "policy_packs": ["/x/policy"]})]
    failing = FakeStack(fail=auto.errors.CommandError(auto.CommandResult(stdout="", stderr="error: boom", code=1)))
    monkeypatch.setattr(workspace, "open_stack", lambda p, s, **kw: failing)
    with pytest.raises(CloudftError, match="pulumi up failed for stack 'dev':\nerror: boom"):
        workspace.run_operation("aws", "dev", "up", on_output=None)


def test_project_dirs_and_unknown_provider():
    assert (workspace.project_dir("aws") / "Pulumi.yaml").is_file()
    assert (workspace.project_dir("azure") / "Pulumi.dev.yaml").is_file()
    with pytest.raises(CloudftError, match="unknown infrastructure provider"):
        workspace.project_dir("gcp")


def test_missing_pulumi_cli_is_a_clear_error(tmp_path, monkeypatch):
    for key, value in _no_pulumi_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PULUMI_HOME", raising=False)
    with pytest.raises(PulumiCliMissing, match="Pulumi CLI is not installed") as exc:
        stack_outputs("aws", "dev")
    assert "get.pulumi.com" in exc.value.hint


@pytest.mark.parametrize("command", ["preview", "up --yes", "destroy --yes", "outputs"])
def test_cli_without_pulumi_says_so_without_traceback(tmp_path, command):
    args = ["infra", *command.split(), "--provider", "aws", "--stack", "dev"]
    proc = subprocess.run(CLOUDFT + args, env=_no_pulumi_env(tmp_path), capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "the Pulumi CLI is not installed" in proc.stderr and "get.pulumi.com" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_imports_no_pulumi(tmp_path):
    code = ("import sys\nfrom cloudft.cli.main import main\n"
            "for argv in (['--help'], ['infra', '--help'], ['infra', 'up', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('PULUMI_LOADED' if any(m.startswith('pulumi') for m in sys.modules) else 'NO_PULUMI')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "preview" in proc.stdout and proc.stdout.strip().endswith("NO_PULUMI")
