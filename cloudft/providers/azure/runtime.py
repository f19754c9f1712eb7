"""What the Azure environments install, kept consistent with their base images.

One torch version everywhere: the one train_entry's image is built `FROM` (train_entry/Dockerfile,
`pytorch/pytorch:<torch>-cuda<X.Y>-...`). A conda environment on an Azure ML base image gets that torch built for
the base image's own CUDA (`download.pytorch.org/whl/cu<XY>`), pinned, so peft/accelerate can no longer pull an
arbitrary torch (and CUDA build) from PyPI.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

from ...errors import CloudftError
from ...paths import train_entry_dir

TORCH_INDEX = "https://download.pytorch.org/whl"
#: CUDA builds published for the pinned torch (pytorch.org "previous versions": 2.7.1 for cu118, cu126, cu128).
TORCH_CUDA_BUILDS = ("11.8", "12.6", "12.8")
_FROM = re.compile(r"^FROM\s+pytorch/pytorch:(?P<torch>\d+\.\d+\.\d+)-cuda(?P<cuda>\d+\.\d+)-", re.M)
_IMAGE_CUDA = re.compile(r"cuda(\d+)\.(\d+)")


@lru_cache(maxsize=1)
def image_torch() -> tuple[str, str]:
    """(torch version, CUDA version) of train_entry's Docker image."""
    dockerfile = train_entry_dir() / "Dockerfile"
    found = _FROM.search(dockerfile.read_text()) if dockerfile.is_file() else None
    if not found:
        raise CloudftError(f"{dockerfile} does not start FROM pytorch/pytorch:<torch>-cuda<X.Y>-...",
                           hint="the Azure environments take their torch version from that line")
    return found["torch"], found["cuda"]


def image_cuda(image: str) -> Optional[str]:
    """The CUDA version an image's name states (`...-cuda12.6-...` → "12.6"), or None."""
    found = _IMAGE_CUDA.search(image)
    return f"{found[1]}.{found[2]}" if found else None


def torch_requirements(base_image: str) -> list[str]:
    """The pip lines that pin torch for `base_image`: its CUDA build from the PyTorch index when the image names a
    CUDA version torch is built for; else the PyPI build of the same version (see `cuda_mismatch`)."""
    version, _ = image_torch()
    cuda = image_cuda(base_image)
    if cuda not in TORCH_CUDA_BUILDS:
        return [f"torch=={version}"]
    tag = "cu" + cuda.replace(".", "")
    return [f"--extra-index-url {TORCH_INDEX}/{tag}", f"torch=={version}+{tag}"]


def cuda_mismatch(base_image: str) -> Optional[str]:
    """Why torch cannot be matched to `base_image`'s CUDA (None when it is)."""
    cuda = image_cuda(base_image)
    if cuda is None:
        return f"the base image {base_image} does not name its CUDA version (…-cudaX.Y-…)"
    if cuda not in TORCH_CUDA_BUILDS:
        return f"torch {image_torch()[0]} has no build for CUDA {cuda} (builds: {', '.join(TORCH_CUDA_BUILDS)})"
    return None
