"""Training images: what each Hugging Face DLC version has installed, and what train_entry would still download.

The HF training DLCs' Python packages come from their Dockerfiles in aws/deep-learning-containers
(huggingface/pytorch/training/docker/<torch>/py3/<cuda>/Dockerfile.gpu); a version maps to `None` (present, version
not pinned there) or its pinned version. A package not listed is treated as absent: the SDK's `sm_train.sh` would
`pip install` it at start, which fails in a VPC without a route to PyPI. The custom image (train_entry/Dockerfile)
installs train_entry/requirements.txt at build time, so it downloads nothing at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

#: transformers version → (base_framework_version, py_version, the Dockerfile's packages, its source path)
HF_TRAINING_IMAGES: dict[str, tuple[str, str, Optional[dict[str, Optional[str]]], str]] = {
    "5.3.0": ("pytorch2.9.0", "py312", {
        "transformers": "5.3.0", "datasets": "4.5.0", "huggingface-hub": "1.10.0", "diffusers": "0.37.0",
        "evaluate": "0.4.6", "trl": "0.28.0", "peft": "0.18.1", "trackio": "0.22.0", "flash-attn": "2.8.3",
        "accelerate": None, "sentencepiece": None, "tokenizers": None, "bitsandbytes": None, "tensorboard": None,
        "pyarrow": None, "boto3": "1.42.87", "jinja2": None, "numpy": None, "torch": "2.9.0"},
        "aws/deep-learning-containers huggingface/pytorch/training/docker/2.9/py3/cu130/Dockerfile.gpu"),
    "4.56.2": ("pytorch2.8.0", "py312", None,
               "aws/deep-learning-containers huggingface/pytorch/training/docker/2.8/py3/cu129/Dockerfile.gpu"),
    "4.55.0": ("pytorch2.7.1", "py312", None,
               "aws/deep-learning-containers huggingface/pytorch/training/docker/2.7/py3/cu128/Dockerfile.gpu"),
    "4.49.0": ("pytorch2.5.1", "py311", None,
               "aws/deep-learning-containers huggingface/pytorch/training/docker/2.5/py3/cu124/Dockerfile.gpu"),
}
#: The default: the newest HF training image in sagemaker-core's image_uri_config/huggingface.json, the first with
#: transformers 5 (train_entry/requirements.txt needs transformers>=5).
DEFAULT_TRANSFORMERS = "5.3.0"


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def requirements_file() -> Path:
    from .staging import train_entry_dir

    return train_entry_dir() / "requirements.txt"


def downloads_at_start(transformers_version: str, requirements: Optional[Path] = None) -> list[str]:
    """train_entry requirements the HF image does not surely satisfy (each would be pip-installed at job start);
    every requirement when the image's packages are not recorded."""
    from packaging.requirements import Requirement

    path = requirements or requirements_file()
    reqs = [Requirement(line.split("#", 1)[0].strip()) for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip()]
    packages = HF_TRAINING_IMAGES[transformers_version][2]
    if packages is None:
        return [str(r) for r in reqs]
    have = {_norm(k): v for k, v in packages.items()}
    out = []
    for req in reqs:
        name = _norm(req.name)
        if name not in have:
            out.append(f"{req} (not in the image)")
        elif req.specifier and (have[name] is None or not req.specifier.contains(have[name], prereleases=True)):
            out.append(f"{req} (image has {have[name] or 'an unpinned version'})")
    return out


def ecr_repository_arn(image_uri: str) -> Optional[str]:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<repo>[:tag|@digest]` → the repository's ARN (None if not ECR)."""
    host, _, path = image_uri.partition("/")
    parts = host.split(".")
    if len(parts) < 6 or parts[1:3] != ["dkr", "ecr"] or not path:
        return None
    repo = path.split("@", 1)[0].rsplit(":", 1)[0] if ":" in path.split("/")[-1] or "@" in path else path
    partition = "aws-cn" if host.endswith(".com.cn") else "aws"
    return f"arn:{partition}:ecr:{parts[3]}:{parts[0]}:repository/{repo}"
