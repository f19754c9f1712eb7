"""The local provider's preflight (a newcomer's first real run): no GPU for a days-long run, memory, the model
neither local nor cached while the hub is unreachable, a missing secret — all reported at once, before anything
starts, with the fix; --force skips only the GPU check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from cloudft.machine import LocalGpu, Machine, catalog_gpu
from cloudft.plan import build_plan
from cloudft.providers.local import LocalProvider
from cloudft.spec import load_spec
from helpers import EXAMPLE_DATA, REPO

LAPTOP = Machine(cpus=2, memory_gb=24, available_gb=20)
WORKSTATION = Machine(cpus=16, memory_gb=128, available_gb=120, gpus=(LocalGpu("NVIDIA L40S", 45.0, "L40S"),))


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("MY_TOKEN", raising=False)


def _example(tmp_path):
    shutil.copytree(EXAMPLE_DATA, tmp_path / "data", dirs_exist_ok=True)
    return shutil.copy(REPO / "examples" / "lora-llama3-8b.yaml", tmp_path / "job.yaml")


def _findings(path, machine: Machine):
    spec = load_spec(path)
    prov = LocalProvider(machine=machine)
    prov.validate(spec)
    plan = build_plan(spec, "local", locate=prov.locate, machine=machine)
    return plan, {f.rule: f for f in prov.checks(plan)}


def _cloudft(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "cloudft.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


def test_submit_8b_on_a_laptop_exits_with_every_finding_and_starts_nothing(tmp_path):
    spec = _example(tmp_path)
    r = _cloudft("submit", str(spec), "--provider", "local")
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    err = r.stderr
    assert "preflight:" in err and "before anything was started" in err
    assert "no CUDA GPU" in err and "--provider aws" in err and "on-demand" in err  # the cloud command and cost
    assert f"{spec}:27:3: secrets.HF_TOKEN" in err and "HF_TOKEN, which is not set" in err
    assert f"{spec}:3:1: base_model" in err and "HF_HUB_OFFLINE is set" in err
    assert not (tmp_path / "runs").exists()  # nothing was started
    forced = _cloudft("submit", str(spec), "--provider", "local", "--force")
    assert forced.returncode == 1 and "no CUDA GPU" not in forced.stderr  # --force skips the GPU check only
    assert "HF_TOKEN, which is not set" in forced.stderr and "HF_HUB_OFFLINE is set" in forced.stderr
    assert not (tmp_path / "runs").exists()


def test_plan_shows_the_findings_and_the_time_here(tmp_path):
    r = _cloudft("plan", str(_example(tmp_path)), "--provider", "local")
    assert r.returncode == 0, r.stderr
    assert "preflight error:" in r.stdout and "estimated training time on this machine" in r.stdout


def test_with_a_gpu_there_is_no_gpu_finding_and_the_time_is_the_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "x")
    spec = _example(tmp_path)
    spec.write_text(spec.read_text().replace("env:HF_TOKEN", "env:MY_TOKEN"))
    plan, gpu = _findings(spec, WORKSTATION)
    assert "local.gpu" not in gpu and "local.memory" not in gpu and "local.secret" not in gpu
    assert "L40S" in gpu["local.time"].message
    _, cpu = _findings(spec, LAPTOP)
    assert cpu["local.gpu"].forceable and cpu["local.gpu"].severity == "error"
    assert plan.estimate.cost.hours < 0.1 * build_plan(load_spec(spec), "local", machine=LAPTOP).estimate.cost.hours


def test_memory_that_does_not_fit_names_what_would(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    spec = _example(tmp_path)
    small = Machine(cpus=2, memory_gb=8, available_gb=6)
    _, found = _findings(spec, small)
    mem = found["local.memory"]
    assert "does not fit in this machine's free memory (6 GB)" in mem.message
    assert "qlora" in mem.fix and "--provider aws" in mem.fix and not mem.forceable


def test_unreachable_hub_cached_model_and_local_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    spec = _example(tmp_path)
    _, found = _findings(spec, WORKSTATION)
    assert "cannot be reached" in found["local.model"].message
    # the same model in the Hugging Face cache (its real layout): nothing to report
    snap = tmp_path / "hf-cache" / "models--meta-llama--Llama-3.1-8B-Instruct"
    (snap / "snapshots" / "abc123").mkdir(parents=True)
    (snap / "snapshots" / "abc123" / "config.json").write_text("{}")
    (snap / "refs").mkdir()
    (snap / "refs" / "main").write_text("abc123")
    _, found = _findings(spec, WORKSTATION)
    assert "local.model" not in found
    # a local directory without config.json is not a model
    (tmp_path / "empty-model").mkdir()
    spec.write_text(spec.read_text().replace("meta-llama/Llama-3.1-8B-Instruct", "./empty-model"))
    _, found = _findings(spec, WORKSTATION)
    assert "is not a model directory" in found["local.model"].message


def test_the_tiny_demo_model_passes(tmp_path, tiny_model, monkeypatch):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: tiny
        base_model: {tiny_model}
        data: {{train: {EXAMPLE_DATA / 'quickstart.jsonl'}}}
        training: {{max_steps: 2}}
    """))
    _, found = _findings(spec, LAPTOP)
    assert {f.severity for f in found.values()} <= {"info"}, found


def test_gpu_names_from_the_driver_map_to_the_planners():
    assert catalog_gpu("NVIDIA H200") == "H200"
    assert catalog_gpu("NVIDIA A100-SXM4-80GB") == "A100-80GB"
    assert catalog_gpu("NVIDIA A10G") == "A10G"
    assert catalog_gpu("Tesla T4") == "T4"
    assert catalog_gpu("Some Future GPU") is None
    assert catalog_gpu("NVIDIA H100 PCIe") is None  # its bf16 peak is not the SXM H100's
    assert catalog_gpu("NVIDIA H200 NVL") is None and catalog_gpu("NVIDIA H100 NVL") == "H100-NVL"
    assert catalog_gpu("NVIDIA L40") is None  # whole words: not the L4
    assert catalog_gpu("NVIDIA A100-SXM4") is None  # not the A10; which A100 is told by its memory
    assert catalog_gpu("NVIDIA A100 80GB PCIe") == "A100-80GB"
