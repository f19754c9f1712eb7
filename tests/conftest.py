"""Shared fixtures: an isolated CLOUDFT_HOME per test, a tiny model built once per session, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import EXAMPLE_DATA


@pytest.fixture(autouse=True)
def cloudft_home(tmp_path, monkeypatch):
    """Every test gets its own run registry and dataset store."""
    home = tmp_path / "cloudft-home"
    monkeypatch.setenv("CLOUDFT_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama + tokenizer trained on the example data, saved with save_pretrained."""
    from train_entry.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    return build_tiny_model(out, data=[EXAMPLE_DATA / "quickstart.jsonl", EXAMPLE_DATA / "preferences.jsonl"])
