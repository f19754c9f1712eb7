"""Shared fixtures: an isolated CLOUDFT_HOME per test, wheels from a local folder only, a tiny model built once per
session, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import EXAMPLE_DATA, write_wheel


@pytest.fixture(scope="session")
def wheel_index(tmp_path_factory) -> Path:
    """A local folder that pip downloads the training images' wheelhouse wheels from (tests never reach PyPI):
    stand-ins with the recorded name, version and requirements in their METADATA and no code. Only staging sees
    them; the real wheels' METADATA is checked against the same record whenever they are fetched."""
    from cloudft.providers.aws.images import HF_TRAINING_IMAGES

    folder = tmp_path_factory.mktemp("wheel-index")
    for image in HF_TRAINING_IMAGES.values():
        for wheel in image.wheelhouse:
            write_wheel(folder, wheel.name, wheel.version, wheel.requires)
    return folder


@pytest.fixture(autouse=True)
def cloudft_home(tmp_path, monkeypatch, wheel_index):
    """Every test gets its own run registry and dataset store; pip finds wheels only in `wheel_index`."""
    home = tmp_path / "cloudft-home"
    monkeypatch.setenv("CLOUDFT_HOME", str(home))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel_index))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama + tokenizer trained on the example data, saved with save_pretrained."""
    from train_entry.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    return build_tiny_model(out, data=[EXAMPLE_DATA / "quickstart.jsonl", EXAMPLE_DATA / "preferences.jsonl"])
