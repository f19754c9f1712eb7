"""Training images: what each Hugging Face DLC has installed, the wheels that travel with the code for what it
lacks (the wheelhouse), and what a job on it would still download at start.

A job on the default image starts with nothing to download: the image's packages (recorded below from its
Dockerfiles and release notes) plus the wheelhouse (exact wheels staged in the `code` channel, installed by the
launcher with `pip install --no-index --no-deps`) meet train_entry/requirements.txt and the wheels' own
requirements. `check_image` decides it with the launcher's `unmet`, the one comparison of "needed" with "there"
(the launcher runs it again in the container on what is really installed). A requirement still unmet would be
pip-installed from PyPI at start (a staged requirements.txt, sagemaker-train's sm_train.sh), which a VPC without a
NAT route cannot reach: preflight `aws.image-downloads-at-start` says so. The report's extras
(train_entry/requirements-report.txt) are never downloaded: without them the report says what it skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from .staging import launcher_module, train_entry_dir

HF_DOCKERFILE = "aws/deep-learning-containers huggingface/pytorch/training/docker/{}/py3/{}/Dockerfile.gpu"


@dataclass(frozen=True)
class Wheel:
    """One wheel of a wheelhouse: an exact release and the requirements its METADATA declares for the image's
    Python without extras (the build compares them with the downloaded wheel, so this record cannot drift)."""

    name: str
    version: str
    requires: tuple[str, ...]

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class TrainingImage:
    """A Hugging Face training DLC: its SDK image-config keys, what it has installed, and its wheelhouse."""

    base_framework_version: str
    py_version: str  # the SDK's py_version ("py312")
    source: str
    #: canonical name → what is known of the installed version, in the launcher's `unmet` terms: "==1.2.3",
    #: a range (">=2.2.3,<3"), or "" (installed, version unknown). None: not recorded (nothing is known).
    packages: Optional[Mapping[str, str]] = None
    wheelhouse: tuple[Wheel, ...] = ()
    python_full_version: Optional[str] = None  # when its Dockerfile says

    @property
    def python(self) -> str:
        """"3.12" of "py312"."""
        return f"{self.py_version[2]}.{self.py_version[3:]}"

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker variables inside the image (Linux x86_64 CPython): which requirements apply there."""
        full = self.python_full_version or self.python
        return {"python_version": self.python, "python_full_version": full,
                "implementation_version": full, "implementation_name": "cpython",
                "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
                "platform_machine": "x86_64", "os_name": "posix"}


#: The 5.3.0 image (huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04-v1.0, built
#: 2026-04-16 per its release v1.0-hf-5.3.0-pt-2.9.0-tr-gpu-py312). Each version comes from one of:
#: [D] pinned in its Dockerfile (huggingface/pytorch/training/docker/2.9/py3/cu130/Dockerfile.gpu, or its base
#:     pytorch/training/docker/2.9/py3/cu130/Dockerfile.gpu: torch, python 3.12.10, "jinja2>=3.1.6", "tqdm>=4.66.3");
#: [R] the release's "Important Packages" list;
#: [P] the requirement of a [D] package, which pip met when it installed it (datasets 4.5.0: pyarrow>=21.0.0,
#:     requests>=2.32.2, xxhash; s3fs 2025.10.0: fsspec==2025.10.0; huggingface-hub 1.10.0: httpx>=0.23,<1,
#:     packaging>=20.9; transformers 5.3.0: safetensors>=0.4.3, tokenizers>=0.22,<=0.23, sentencepiece by its
#:     [sentencepiece] extra; trackio 0.22.0: pandas<3; sagemaker-core: pydantic<3; seaborn 0.13 (base): matplotlib);
#: [U] installed without a pin in layers built after 2025-08 (the oldest, base:13.0.0-...-cu130, needs CUDA 13.0);
#:     pip takes the newest release its co-installed pins allow, so at least the newest one uploaded before
#:     2025-06-01 (`pip download --uploaded-prior-to 2025-06-01`). On paper: the launcher checks it in the container.
DLC_5_3_0 = {
    # [D]
    "transformers": "==5.3.0", "datasets": "==4.5.0", "huggingface-hub": "==1.10.0", "diffusers": "==0.37.0",
    "evaluate": "==0.4.6", "trl": "==0.28.0", "peft": "==0.18.1", "trackio": "==0.22.0", "flash-attn": "==2.8.3",
    "ninja": "==1.13.0", "boto3": "==1.42.87", "dill": "==0.3.8", "multiprocess": "==0.70.16",
    "s3fs": "==2025.10.0", "torch": "==2.9.0", "jinja2": ">=3.1.6", "tqdm": ">=4.66.3",
    # [R]
    "numpy": "==1.26.4", "pyyaml": "==6.0.3", "filelock": "==3.25.2",
    # [P]
    "fsspec": "==2025.10.0", "pyarrow": ">=21.0.0", "requests": ">=2.32.2", "httpx": ">=0.23.0,<1",
    "xxhash": "", "packaging": ">=20.9", "safetensors": ">=0.4.3", "tokenizers": ">=0.22.0,<=0.23.0",
    "sentencepiece": "", "regex": "",
    # [U] (with a [P] upper bound where one is known)
    "accelerate": ">=1.7.0", "bitsandbytes": ">=0.46.0", "tensorboard": ">=2.19.0", "pydantic": ">=2.11.5,<3",
    "pandas": ">=2.2.3,<3", "psutil": ">=7.0.0", "matplotlib": ">=3.10.3",
}

#: What the 5.3.0 image lacks, as exact wheels: trl at the release train_entry is tested with (the image has 0.28.0,
#: train_entry needs >=1.0), and what that trl needs beyond the image: datasets>=4.7.0 (the newest whose own
#: requirements the image meets: 5.x needs pyarrow>=24 and huggingface-hub>=1.31) and accelerate>=1.10.1 (the
#: tested release). Requirements from each wheel's METADATA (PyPI).
WHEELHOUSE_5_3_0 = (
    Wheel("trl", "1.16.0", ("accelerate>=1.10.1", "datasets>=4.7.0", "huggingface_hub>=0.34.0", "jinja2",
                            "numpy>=1.26.0", "packaging>20.0", "pandas>=2.1.1", "psutil>=5.9.4", "pyarrow>=21.0.0",
                            "pyyaml>=6.0.1", "transformers>=4.56.2")),
    Wheel("datasets", "4.8.5", ("filelock", "numpy>=1.17", "pyarrow>=21.0.0", "dill<0.4.2,>=0.3.0", "pandas",
                                "requests>=2.32.2", "httpx<1.0.0", "tqdm>=4.66.3", "xxhash", "multiprocess<0.70.20",
                                "fsspec[http]<=2026.2.0,>=2023.1.0", "huggingface-hub<2.0,>=0.25.0", "packaging",
                                "pyyaml>=5.1")),
    Wheel("accelerate", "1.15.0", ("numpy>=1.17", "packaging>=20.0", "psutil", "pyyaml", "torch>=2.0.0",
                                   "huggingface_hub>=0.21.0", "safetensors>=0.4.3")),
)

#: transformers version → the image (its versions are the SDK's image_uri_config/huggingface.json training keys)
HF_TRAINING_IMAGES: dict[str, TrainingImage] = {
    "5.3.0": TrainingImage("pytorch2.9.0", "py312", HF_DOCKERFILE.format("2.9", "cu130"), DLC_5_3_0,
                           WHEELHOUSE_5_3_0, python_full_version="3.12.10"),
    "4.56.2": TrainingImage("pytorch2.8.0", "py312", HF_DOCKERFILE.format("2.8", "cu129")),
    "4.55.0": TrainingImage("pytorch2.7.1", "py312", HF_DOCKERFILE.format("2.7", "cu128")),
    "4.49.0": TrainingImage("pytorch2.5.1", "py311", HF_DOCKERFILE.format("2.5", "cu124")),
}
#: The default: the newest HF training image in sagemaker-core's image_uri_config/huggingface.json, the first with
#: transformers 5 (train_entry/requirements.txt needs transformers>=5).
DEFAULT_TRANSFORMERS = "5.3.0"


def requirements(optional: bool = False) -> list[tuple[str, str]]:
    """train_entry's requirements as (requirement, "train_entry") pairs; `optional`: the report's extras instead."""
    name = "requirements-report.txt" if optional else "requirements.txt"
    who = "train_entry's report" if optional else "train_entry"
    return [(r, who) for r in launcher_module().requirement_lines((train_entry_dir() / name).read_text())]


@dataclass(frozen=True)
class ImageCheck:
    """What a job on an image would lack with its wheelhouse: `unmet` (required: downloaded at start) and
    `optional` (the report's extras: skipped), as (requirement, why) pairs."""

    wheels: tuple[Wheel, ...]
    unmet: list[tuple[str, str]]
    optional: list[tuple[str, str]]

    @property
    def downloads(self) -> list[str]:
        """The requirements pip would install from PyPI at start (sagemaker-train's sm_train.sh)."""
        return list(dict.fromkeys(req for req, _ in self.unmet))


def check_image(transformers_version: str, wheels: Optional[tuple[Wheel, ...]] = None) -> ImageCheck:
    """Compare train_entry's requirements and the wheels' own with the image's packages plus the wheels (by
    default the image's wheelhouse). An image whose packages are not recorded meets nothing."""
    image = HF_TRAINING_IMAGES[transformers_version]
    wheels = image.wheelhouse if wheels is None else wheels
    if image.packages is None:
        why = "the image's packages are not recorded"
        return ImageCheck(wheels, [(r, why) for r, _ in requirements()],
                          [(r, why) for r, _ in requirements(optional=True)])
    launcher = launcher_module()
    have = {launcher.canonical(k): v for k, v in image.packages.items()}
    have.update({launcher.canonical(w.name): f"=={w.version}" for w in wheels})
    needed = requirements() + [(r, f"{w.name} {w.version}") for w in wheels for r in w.requires]
    env = image.marker_environment()
    return ImageCheck(wheels, launcher.unmet(needed, have, env), launcher.unmet(requirements(optional=True), have, env))


def ecr_repository_arn(image_uri: str) -> Optional[str]:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<repo>[:tag|@digest]` → the repository's ARN (None if not ECR)."""
    host, _, path = image_uri.partition("/")
    parts = host.split(".")
    if len(parts) < 6 or parts[1:3] != ["dkr", "ecr"] or not path:
        return None
    repo = path.split("@", 1)[0].rsplit(":", 1)[0] if ":" in path.split("/")[-1] or "@" in path else path
    partition = "aws-cn" if host.endswith(".com.cn") else "aws"
    return f"arn:{partition}:ecr:{parts[3]}:{parts[0]}:repository/{repo}"


def image_regions(transformers_version: str) -> Optional[set[str]]:
    """The regions the SageMaker SDK's image config (sagemaker-core's image_uri_config/huggingface.json) publishes
    the Hugging Face training image for `transformers_version` in; None when the SDK is not installed. Read as a
    file through the package metadata: `cloudft plan` must not import the SDK."""
    import importlib.metadata
    import json

    try:
        dist = importlib.metadata.distribution("sagemaker-core")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = next((f for f in dist.files or () if str(f).endswith("image_uri_config/huggingface.json")), None)
    if path is None:
        return None
    image = HF_TRAINING_IMAGES[transformers_version]
    versions = json.loads(dist.locate_file(path).read_text())["training"]["versions"]
    entry = versions.get(transformers_version, {}).get(image.base_framework_version, {})
    return set(entry.get("registries", {}))
