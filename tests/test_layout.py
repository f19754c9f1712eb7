"""The container-layout resolver: run config, command-line overrides, SageMaker /opt/ml, Azure folders."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from train_entry.config import DataConfig, OutputsConfig, RunConfig
from train_entry.layout import LayoutError, resolve

from helpers import write_jsonl


def _cfg(**outputs) -> RunConfig:
    return RunConfig(name="t", base_model="m", data=DataConfig(train="/opt/ml/input/data/train/train.jsonl"),
                     outputs=OutputsConfig(**outputs))


@pytest.fixture
def opt_ml(tmp_path, monkeypatch):
    root = tmp_path / "opt-ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text("{}")
    (root / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (root / "input" / "config" / "checkpointconfig.json").write_text(
        json.dumps({"LocalPath": str(root / "checkpoints-synced"), "S3Uri": "s3://b/ckpt"}))
    write_jsonl(root / "input" / "data" / "train" / "train.jsonl", [{"prompt": "a", "completion": "b"}])
    monkeypatch.setenv("CLOUDFT_SM_ROOT", str(root))
    return root


def test_sagemaker_layout(opt_ml):
    layout = resolve(_cfg())
    assert layout.platform == "sagemaker"
    assert layout.output_dir == opt_ml / "model"
    assert layout.checkpoint_dir == opt_ml / "checkpoints-synced"  # from checkpointconfig.json
    assert layout.train == opt_ml / "input" / "data" / "train" / "train.jsonl"  # in-container path → channel
    assert layout.failure_file == opt_ml / "output" / "failure"


def _model_tar(path: Path, files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def test_sagemaker_init_adapter_archive_is_extracted(opt_ml):
    _model_tar(opt_ml / "input" / "data" / "init_adapter" / "model.tar.gz",
               {"adapter_config.json": b'{"peft_type": "LORA"}'})
    layout = resolve(_cfg(init_adapter="/opt/ml/input/data/init_adapter"))
    assert (layout.init_adapter / "adapter_config.json").read_text() == '{"peft_type": "LORA"}'


def test_sagemaker_init_model_channel_holds_full_weights(opt_ml):
    """A full fine-tuning stage's model.tar.gz arrives in the `init_model` channel (named like the field)."""
    _model_tar(opt_ml / "input" / "data" / "init_model" / "model.tar.gz",
               {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"x"})
    layout = resolve(_cfg(init_model="/opt/ml/input/data/init_model"))
    assert (layout.init_model / "config.json").read_text() == '{"model_type": "llama"}'
    assert layout.init_adapter is None
    assert layout.log_file == opt_ml / "output" / "data" / "train_entry.log"  # uploaded beside the model


def test_full_weights_are_not_an_adapter(opt_ml):
    _model_tar(opt_ml / "input" / "data" / "init_adapter" / "model.tar.gz", {"config.json": b"{}"})
    with pytest.raises(LayoutError, match="holds full model weights .* pass it as outputs.init_model"):
        resolve(_cfg(init_adapter="/opt/ml/input/data/init_adapter"))


def test_azure_init_model_input_is_a_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_SM_ROOT", str(tmp_path / "absent"))
    monkeypatch.setenv("AZUREML_RUN_ID", "run-1")
    weights = tmp_path / "azureml" / "inputs" / "init_model"
    weights.mkdir(parents=True)
    (weights / "config.json").write_text("{}")
    adapter = tmp_path / "azureml" / "inputs" / "init_adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    write_jsonl(tmp_path / "train.jsonl", [{"text": "x"}])
    layout = resolve(_cfg(), tmp_path / "run.json", train=str(tmp_path / "train.jsonl"), init_model=str(weights),
                     init_adapter=str(adapter), output_dir=str(tmp_path / "out"))
    assert layout.platform == "azureml"
    assert (layout.init_model, layout.init_adapter) == (weights, adapter)
    assert layout.log_file == tmp_path / "out" / "train_entry.log"
    with pytest.raises(LayoutError, match="holds an adapter .* pass it as outputs.init_adapter"):
        resolve(_cfg(), tmp_path / "run.json", train=str(tmp_path / "train.jsonl"), init_model=str(adapter))


def test_flags_win_and_folders_resolve_to_their_single_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_SM_ROOT", str(tmp_path / "absent"))
    inputs = tmp_path / "azureml" / "inputs" / "train"
    write_jsonl(inputs / "part.jsonl", [{"prompt": "a", "completion": "b"}])
    out = tmp_path / "azureml" / "outputs" / "adapter"
    layout = resolve(_cfg(output_dir="/nowhere"), tmp_path / "run.json", train=str(inputs), output_dir=str(out))
    assert layout.platform == "local"
    assert layout.train == inputs / "part.jsonl"
    assert layout.output_dir == out


def test_relative_paths_are_relative_to_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_SM_ROOT", str(tmp_path / "absent"))
    write_jsonl(tmp_path / "d" / "train.jsonl", [{"text": "x"}])
    cfg = RunConfig(name="t", base_model="m", data=DataConfig(train="d/train.jsonl"),
                    outputs=OutputsConfig(output_dir="out"))
    layout = resolve(cfg, tmp_path / "run.json")
    assert layout.train == tmp_path / "d" / "train.jsonl"
    assert layout.output_dir == tmp_path / "out"
    assert layout.checkpoint_dir == tmp_path / "checkpoints"


def test_ambiguous_or_missing_data_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFT_SM_ROOT", str(tmp_path / "absent"))
    folder = tmp_path / "many"
    write_jsonl(folder / "a.jsonl", [{"text": "x"}])
    write_jsonl(folder / "b.jsonl", [{"text": "y"}])
    with pytest.raises(LayoutError, match="2 data files"):
        resolve(_cfg(), tmp_path / "run.json", train=str(folder))
    with pytest.raises(LayoutError, match="does not exist"):
        resolve(_cfg(), tmp_path / "run.json", train=str(tmp_path / "missing.jsonl"))
