"""Azure environments hold what cloudft runs in them: torch pinned to train_entry's image version and built for the
base image's CUDA (training and serving), mlflow and azure-identity present where cloudft turns on tracking and the
Key Vault launcher, and nothing turned on that a prebuilt image does not declare."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cloudft.plan import build_plan
from cloudft.providers.azure import AzureProvider
from cloudft.providers.azure.deploy import serve_entities
from cloudft.providers.azure.entities import EXTRA_PIP, build_context, training_environment
from cloudft.providers.azure.handle import AzureHandle
from cloudft.providers.azure.runtime import image_cuda, image_torch, torch_requirements
from cloudft.providers.azure.section import DEFAULT_SERVE_IMAGE, DEFAULT_TRAIN_IMAGE, AzureSection
from cloudft.registry import RunRecord
from cloudft.spec import load_spec_text
from helpers import REPO

LORA = REPO / "examples" / "azure-lora.yaml"


def _pip(env) -> list[str]:
    conda = env.conda_file if isinstance(env.conda_file, dict) else yaml.safe_load(env.conda_file)
    return next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))


def _pinned(pip: list[str]) -> tuple[str, str]:
    """(version, cuda tag) of the one torch line; fails on an unpinned or doubled torch."""
    lines = [p for p in pip if re.match(r"torch\b", p)]
    assert len(lines) == 1, lines
    found = re.fullmatch(r"torch==(\d+\.\d+\.\d+)\+(cu\d+)", lines[0])
    assert found, f"torch is not pinned to a CUDA build: {lines[0]}"
    index = [p for p in pip if p.startswith("--extra-index-url")]
    assert index == [f"--extra-index-url https://download.pytorch.org/whl/{found[2]}"]
    return found[1], found[2]


def test_train_entry_image_version_is_read_from_its_dockerfile():
    text = (REPO / "train_entry" / "Dockerfile").read_text()
    version, cuda = image_torch()
    assert f"FROM pytorch/pytorch:{version}-cuda{cuda}-" in text


def test_training_environment_pins_torch_for_the_base_images_cuda():
    env = training_environment(AzureSection())
    version, tag = _pinned(_pip(env))
    assert env.image == DEFAULT_TRAIN_IMAGE
    assert (version, tag) == (image_torch()[0], "cu" + image_cuda(DEFAULT_TRAIN_IMAGE).replace(".", ""))
    assert image_cuda(DEFAULT_TRAIN_IMAGE) == image_torch()[1]  # same CUDA as train_entry's own image
    other = training_environment(AzureSection(environment={
        "base_image": "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"}))
    assert _pinned(_pip(other)) == (version, "cu118") and other.version != env.version


def test_serving_environment_pins_the_same_torch_for_its_image(tmp_path):
    handle = AzureHandle(stages=("0-sft",), job_type="command", azure={},
                         outputs={"0-sft": "azureml://datastores/workspaceblobstore/paths/cloudft/r/0-sft/adapter/"},
                         base_model="Qwen/Qwen2.5-0.5B-Instruct", instance_type="Standard_NC24ads_A100_v4")
    run = RunRecord(run_id="r", name="n", provider="azure", status="completed", handle=handle.model_dump(mode="json"))
    _, deployment = serve_entities(run, AzureSection(), "ep-abc", None)
    version, tag = _pinned(_pip(deployment.environment))
    assert version == image_torch()[0] and tag == "cu" + image_cuda(DEFAULT_SERVE_IMAGE).replace(".", "")


def test_an_image_with_an_unknown_cuda_gets_the_pinned_pypi_torch():
    assert torch_requirements("myacr.azurecr.io/base:1") == [f"torch=={image_torch()[0]}"]


def test_build_context_is_laid_out_as_the_dockerfile_expects_and_holds_the_extras(tmp_path):
    ctx = build_context(tmp_path / "ctx")
    dockerfile = (ctx / "Dockerfile").read_text()
    for src in re.findall(r"^COPY\s+(\S+)\s", dockerfile, re.M):  # every COPY source exists in the context
        assert (ctx / src).exists(), src
    assert f"RUN pip install --no-cache-dir {' '.join(EXTRA_PIP)}" in dockerfile
    assert {"azureml-mlflow", "azure-identity"} <= set(EXTRA_PIP)
    assert dockerfile.rstrip().endswith("ENTRYPOINT []\nCMD []")  # Azure ML runs the job's command
    env = training_environment(AzureSection(environment={"build": True}), tmp_path / "ctx2")
    assert Path(env.build.path) == tmp_path / "ctx2" and env.build.dockerfile_path == "Dockerfile"
    again = training_environment(AzureSection(environment={"build": True}), tmp_path / "ctx3")
    assert again.version == env.version  # content-addressed: built once


def _dry_run(text: str, out: Path) -> Path:
    prov = AzureProvider()
    spec = load_spec_text(text, str(LORA))
    prov.validate(spec)
    plan = build_plan(spec, "azure", locate=prov.locate)
    from cloudft.preflight import enforce

    enforce(plan, prov.preflight(plan))
    prov.submit(plan, dry_run=True, out_dir=str(out))
    return out


def _mlflow(out: Path) -> bool:
    return yaml.safe_load((out / "code" / "cloudft_run" / "stage0.json").read_text())["tracking"]["mlflow"]


IMAGE = "  # environment: {image: myacr.azurecr.io/cloudft/train:1.0}   # prebuilt image (fastest)"


def test_mlflow_is_turned_on_only_where_the_environment_has_it(tmp_path):
    no_secrets = LORA.read_text().replace("secrets:\n  HF_TOKEN: keyvault:hf-token\n", "")
    assert _mlflow(_dry_run(no_secrets, tmp_path / "default"))  # conda env: azureml-mlflow added
    prebuilt = no_secrets.replace(IMAGE, "  environment: {image: myacr.azurecr.io/cloudft/train:1.0}")
    assert not _mlflow(_dry_run(prebuilt, tmp_path / "image"))  # the image does not say it has mlflow
    declared = no_secrets.replace(IMAGE, "  environment: {image: myacr.azurecr.io/cloudft/train:1.0, "
                                         "provides: [mlflow]}")
    assert _mlflow(_dry_run(declared, tmp_path / "declared"))
    built = no_secrets.replace(IMAGE, "  environment: {build: true}")
    assert _mlflow(_dry_run(built, tmp_path / "built"))


def test_secrets_with_an_image_without_azure_identity_are_refused(tmp_path):
    from cloudft.errors import CloudftError

    text = LORA.read_text().replace(IMAGE, "  environment: {image: myacr.azurecr.io/cloudft/train:1.0}")
    with pytest.raises(CloudftError, match="imports azure-identity, which azure.environment.image does not"):
        _dry_run(text, tmp_path / "refused")
    ok = LORA.read_text().replace(IMAGE, "  environment: {image: myacr.azurecr.io/cloudft/train:1.0, "
                                         "provides: [azure-identity]}")
    assert (_dry_run(ok, tmp_path / "ok") / "job.yml").is_file()
