"""What the AWS path relies on outside cloudft: the SDK's private request builder (pinned and checked), what the
images have installed, which ECR repositories the example stack lets the role pull, and secret references."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from aws_fixtures import EXAMPLES, plan_for
from cloudft.errors import CloudftError
from cloudft.providers.aws import images, submit
from test_aws_dryrun import no_aws  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def test_installed_sagemaker_train_is_the_tested_release_and_the_contract_holds(no_aws):
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    assert version("sagemaker-train") in SpecifierSet(submit.SDK_TESTED)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"sagemaker-train{submit.SDK_TESTED}"' in pyproject  # one range: the pin is what is tested
    prov, plan = plan_for(EXAMPLES / "aws-lora.yaml")
    job = next(r["params"] for r in prov.submit(plan, dry_run=True) if r["operation"] == "CreateTrainingJob")
    assert job["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]  # the driver contract it relies on


def test_a_changed_sdk_is_refused_not_half_used():
    class Trainer:  # an SDK release that renamed the private builder
        def _build_request(self):
            return {}

    with pytest.raises(CloudftError, match="sagemaker-train") as err:
        submit.training_job_request(Trainer(), [], "cft-x-1")
    assert submit.SDK_TESTED in err.value.hint

    class Empty:
        def _create_training_job_args(self, input_data_config=None, boto3=False):
            return None

    with pytest.raises(CloudftError, match="built no CreateTrainingJob request"):
        submit.training_job_request(Empty(), [], "cft-x-1")


def test_no_bytecode_is_uploaded_and_the_sdk_role_check_is_scoped(no_aws, monkeypatch):
    import os

    monkeypatch.delenv("SAGEMAKER_VALIDATE_ROLE", raising=False)
    prov, plan = plan_for(EXAMPLES / "aws-sft-dpo.yaml")
    keys = [r["params"]["Key"] for r in prov.submit(plan, dry_run=True) if r["operation"] == "PutObject"]
    assert any("/sm_drivers/" in k for k in keys) and any("/code/train_entry/" in k for k in keys)
    assert not [k for k in keys if "__pycache__" in k or k.endswith((".pyc", ".pyo"))]
    assert "SAGEMAKER_VALIDATE_ROLE" not in os.environ  # turned off only while the trainer was built


def test_default_image_is_the_sdks_transformers5_image_and_its_packages_are_recorded():
    import importlib.resources

    cfg = json.loads(importlib.resources.files("sagemaker.core.image_uri_config").joinpath("huggingface.json")
                     .read_text())
    versions = cfg["training"]["versions"]
    assert images.DEFAULT_TRANSFORMERS in versions and images.DEFAULT_TRANSFORMERS.startswith("5.")
    for v, image in images.HF_TRAINING_IMAGES.items():
        assert image.base_framework_version in versions[v], v
        assert image.py_version in versions[v][image.base_framework_version]["py_versions"], v
    # what the image alone lacks is computed, not assumed: train_entry wants trl>=1.0, the DLC has 0.28.0
    alone = images.check_image(images.DEFAULT_TRANSFORMERS, wheels=())
    unmet = dict(alone.unmet)
    assert set(unmet) == {"trl<2,>=1.0", "accelerate>=1.12"} and "0.28.0" in unmet["trl<2,>=1.0"]
    # with its wheelhouse (and the wheels' own requirements) nothing is left to download at start
    assert images.check_image(images.DEFAULT_TRANSFORMERS).downloads == []


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "__future__"}


def test_the_custom_image_installs_every_module_the_launcher_imports():
    from packaging.requirements import Requirement

    dockerfile = (REPO / "train_entry" / "Dockerfile").read_text()
    installed = {Requirement(line.split("#")[0].strip()).name.lower()
                 for line in (REPO / "train_entry" / "requirements.txt").read_text().splitlines()
                 if line.split("#")[0].strip()}
    for line in dockerfile.splitlines():
        if line.startswith("RUN pip install"):
            installed |= {Requirement(tok.strip('"')).name.lower() for tok in line.split()[3:]
                          if not tok.startswith("-") and "/" not in tok}
    launcher = _third_party_imports(REPO / "templates" / "aws" / "cloudft_launch.py")
    # packaging: a requirement of transformers (so in every image train_entry runs on), else the copy pip vendors
    assert launcher == {"boto3", "packaging", "pip"}
    assert "boto3" in installed
    from importlib.metadata import requires

    assert any(r.startswith("packaging") and "extra" not in r for r in requires("transformers"))


def test_example_stack_lets_the_role_pull_exactly_the_images_submit_and_deploy_use():
    import yaml

    from cloudft.providers.aws.deploy import serving_image
    from cloudft.providers.aws.section import AwsSection

    config = yaml.safe_load((REPO / "infra" / "aws" / "Pulumi.dev.yaml").read_text())["config"]
    region = config["aws:region"]
    used = {images.ecr_repository_arn(submit.training_image(AwsSection(), region, "ml.g5.2xlarge")),
            images.ecr_repository_arn(serving_image(region, AwsSection().deploy_instance_type))}
    assert set(config["cloudft:pullRepositoryArns"]) == used


@pytest.mark.parametrize("ref, parsed", [
    ("secretsmanager:cloudft/hf-token", ("cloudft/hf-token", None)),
    ("secretsmanager:cloudft/hf:HF_TOKEN", ("cloudft/hf", "HF_TOKEN")),
    ("arn:aws:secretsmanager:us-east-1:111122223333:secret:hf-AbCdEf",
     ("arn:aws:secretsmanager:us-east-1:111122223333:secret:hf-AbCdEf", None)),
    ("arn:aws:secretsmanager:us-east-1:111122223333:secret:hf-AbCdEf:token",
     ("arn:aws:secretsmanager:us-east-1:111122223333:secret:hf-AbCdEf", "token")),
])
def test_secret_references_with_json_keys(ref, parsed):
    assert submit.launcher_module().parse_ref(ref) == parsed


def test_key_value_secrets_give_one_value_and_errors_never_show_values():
    launch = submit.launcher_module()
    assert launch.secret_value("HF_TOKEN", "hf_plain", None) == "hf_plain"
    assert launch.secret_value("HF_TOKEN", '{"HF_TOKEN": "hf_one"}', None) == "hf_one"  # the console's default
    assert launch.secret_value("HF_TOKEN", '{"a": "x1", "token": "hf_two"}', "token") == "hf_two"
    with pytest.raises(ValueError, match=r"keys \['a', 'token'\]") as err:
        launch.secret_value("HF_TOKEN", '{"a": "x1", "token": "hf_two"}', None)
    assert "hf_two" not in str(err.value) and "x1" not in str(err.value)
    with pytest.raises(ValueError, match="no key 'nope'"):
        launch.secret_value("HF_TOKEN", '{"a": "x1"}', "nope")
    for bad in ("secretsmanager:", "secretsmanager:a:b:c", "arn:aws:s3:::b/k", "vault:x"):
        with pytest.raises(ValueError):
            launch.parse_ref(bad)
    with pytest.raises(CloudftError, match="json_key"):
        submit.secret_refs({"HF_TOKEN": "secretsmanager:a:b:c"})


def test_the_launcher_resolves_a_key_value_secret_from_secrets_manager(monkeypatch):
    import boto3
    from moto import mock_aws

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    launch = submit.launcher_module()
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(Name="cloudft/hf", SecretString=json.dumps({"HF_TOKEN": "hf_kv"}))["ARN"]
        sm.create_secret(Name="cloudft/multi", SecretString=json.dumps({"a": "1", "b": "hf_b"}))
        env = {"CLOUDFT_SECRET_REFS": json.dumps({"HF_TOKEN": arn, "OTHER": "secretsmanager:cloudft/multi:b"})}
        assert sorted(launch.resolve_secrets(env)) == ["HF_TOKEN", "OTHER"]
    assert (env["HF_TOKEN"], env["OTHER"]) == ("hf_kv", "hf_b")
