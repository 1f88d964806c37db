"""Shared fixtures: tiny random Janus checkpoints written to disk and loaded back."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_janus_dir(tmp_path_factory):
    """A 32 px, 16-image-token random Janus with our tokenizer, saved as safetensors."""
    from model.tiny import JanusSpec, create_janus

    return create_janus(tmp_path_factory.mktemp("tiny-janus"), JanusSpec(), seed=0)


@pytest.fixture(scope="session")
def tiny_echogen(tiny_janus_dir):
    """The tiny model on the exact float32 decode path (tests compare it with transformers' own)."""
    from model.echogen import EchoGen

    return EchoGen.load(tiny_janus_dir, half_weights=False)


@pytest.fixture(scope="session")
def spread_echogen(tiny_janus_dir):
    """The tiny model with spread-out weights, so greedy image tokens vary step to step (exact
    float32 decode path, as `tiny_echogen`)."""
    from model.echogen import EchoGen
    from model.tiny import spread_weights

    eg = EchoGen.load(tiny_janus_dir, half_weights=False)
    spread_weights(eg.model)
    return eg
