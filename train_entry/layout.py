"""Resolve where train_entry reads and writes: from the run config, command-line overrides, SageMaker's
container layout (`/opt/ml/...`) or Azure ML inputs/outputs passed as folders.

Precedence: command-line flag > run config > container layout > a local default beside the config.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .config import RunConfig

DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".csv", ".parquet")
LOG_NAME = "train_entry.log"


class LayoutError(ValueError):
    """A path train_entry needs cannot be resolved (exit code 2)."""


@dataclass
class Layout:
    output_dir: Path
    checkpoint_dir: Path
    train: Path
    validation: Optional[Path]
    init_adapter: Optional[Path]
    reward_model: Optional[Path]
    platform: str  # local | sagemaker | azureml
    failure_file: Optional[Path] = None
    init_model: Optional[Path] = None  # full weights of an earlier stage (replace base_model)
    run_log: Optional[Path] = None  # train_entry's log file (full tracebacks); default: output_dir/train_entry.log

    @property
    def logging_dir(self) -> Path:
        return self.output_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.run_log or self.output_dir / LOG_NAME


def sagemaker_root() -> Path:
    return Path(os.environ.get("CLOUDFT_SM_ROOT", "/opt/ml"))


def _in_sagemaker() -> bool:
    root = sagemaker_root()
    return (root / "input" / "config").is_dir() or "TRAINING_JOB_NAME" in os.environ


def data_file(path: str | Path, what: str) -> Path:
    """A data path: a file, or a folder holding exactly one data file (a mounted channel or Azure input)."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(DATA_SUFFIXES)
                       and not f.name.startswith("."))
        if len(files) == 1:
            return files[0]
        if not files:
            raise LayoutError(f"{what}: the folder {p} holds no data file ({', '.join(DATA_SUFFIXES)})")
        named = [f for f in files if f.stem.split(".")[0] == what]
        if len(named) == 1:
            return named[0]
        raise LayoutError(f"{what}: the folder {p} holds {len(files)} data files; pass one file")
    raise LayoutError(f"{what}: {p} does not exist")


def model_dir(path: str | Path, what: str) -> Path:
    """An adapter/model folder; a SageMaker `model.tar.gz` inside it is extracted first."""
    p = Path(path)
    if not p.exists():
        raise LayoutError(f"{what}: {p} does not exist")
    archive = p / "model.tar.gz" if p.is_dir() else p
    if archive.is_file() and archive.name.endswith(".tar.gz"):
        target = archive.parent / (archive.name[: -len(".tar.gz")] + ".extracted")
        if not (target / ".done").exists():
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
            (target / ".done").write_text("")
        return target
    return p


# what an earlier stage's folder must hold, and where the other kind of folder belongs
_STAGE_FOLDERS = {
    "init_adapter": ("adapter_config.json", "config.json", "full model weights from a full fine-tuning stage",
                     "outputs.init_model (--init-model)"),
    "init_model": ("config.json", "adapter_config.json", "an adapter", "outputs.init_adapter (--init-adapter)"),
}


def _stage_folder(path: Path, what: str) -> Path:
    """`path` if it holds what `what` needs; otherwise say where it belongs (full weights are not an adapter)."""
    need, other, other_kind, other_field = _STAGE_FOLDERS[what]
    if (path / need).is_file():
        return path
    if (path / other).is_file():
        raise LayoutError(f"{what}: {path} holds {other_kind} ({other}, no {need}); pass it as {other_field}")
    raise LayoutError(f"{what}: {path} holds no {need}; pass the output folder of an earlier stage")


def _sm_checkpoint_dir(root: Path) -> Path:
    cfg = root / "input" / "config" / "checkpointconfig.json"
    if cfg.is_file():
        try:
            local = json.loads(cfg.read_text()).get("LocalPath")
            if local:
                return Path(local)
        except json.JSONDecodeError:
            pass
    return root / "checkpoints"


def _sm_channel(root: Path, name: str) -> Optional[Path]:
    p = root / "input" / "data" / name
    return p if p.exists() else None


def resolve(cfg: RunConfig, config_path: Optional[Path] = None, *, output_dir: Optional[str] = None,
            checkpoint_dir: Optional[str] = None, train: Optional[str] = None, validation: Optional[str] = None,
            init_adapter: Optional[str] = None, reward_model: Optional[str] = None,
            init_model: Optional[str] = None) -> Layout:
    """Resolve every path train_entry uses. Relative run-config paths are relative to the config file."""
    base = config_path.parent if config_path else Path.cwd()
    if cfg.outputs.data_dir:
        data_base = Path(cfg.outputs.data_dir)
    else:
        data_base = base

    def rel(value: Optional[str], root: Path) -> Optional[Path]:
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else root / p

    if os.environ.get("AZUREML_RUN_ID") or os.environ.get("AZUREML_CR_EXECUTION_WORKING_DIR_PATH"):
        platform = "azureml"
    elif _in_sagemaker():
        platform = "sagemaker"
    else:
        platform = "local"
    sm = sagemaker_root()

    out = output_dir or cfg.outputs.output_dir
    ckpt = checkpoint_dir or cfg.outputs.checkpoint_dir
    failure = run_log = None
    if platform == "sagemaker":
        out_p = rel(out, base) or sm / "model"
        ckpt_p = rel(ckpt, base) or _sm_checkpoint_dir(sm)
        failure = sm / "output" / "failure"
        # output/data goes to output.tar.gz at the end of the job, beside (not inside) the model artifact
        run_log = sm / "output" / "data" / LOG_NAME
    else:
        out_p = rel(out, base) or base / "output"
        ckpt_p = rel(ckpt, base) or out_p.parent / "checkpoints"

    def source(flag: Optional[str], configured: Optional[str], channel: str, root: Path) -> Optional[Path]:
        """Flag, else run config; in SageMaker a configured path that is absent falls back to its channel."""
        src = flag or configured
        if not src:
            return None
        path = rel(src, root)
        if platform == "sagemaker" and not flag and not path.exists():
            return _sm_channel(sm, channel) or path
        return path

    train_p = data_file(source(train, cfg.data.train, "train", data_base), "train")
    val_src = source(validation, cfg.data.validation, "validation", data_base)
    val_p = data_file(val_src, "validation") if val_src else None
    init_src = source(init_adapter, cfg.outputs.init_adapter, "init_adapter", base)
    init_p = _stage_folder(model_dir(init_src, "init_adapter"), "init_adapter") if init_src else None
    init_model_src = source(init_model, cfg.outputs.init_model, "init_model", base)
    init_model_p = _stage_folder(model_dir(init_model_src, "init_model"), "init_model") if init_model_src else None
    reward_src = source(reward_model, cfg.reward_model, "reward_model", base)
    reward_p = model_dir(reward_src, "reward_model") if reward_src else None

    return Layout(output_dir=out_p, checkpoint_dir=ckpt_p, train=train_p, validation=val_p,
                  init_adapter=init_p, reward_model=reward_p, platform=platform, failure_file=failure,
                  init_model=init_model_p, run_log=run_log)
