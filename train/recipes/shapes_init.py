"""The EchoGen-Shapes architecture and its from-scratch initialization.

A Janus with a small Llama LM, a small SigLIP encoder and our VQ, at 128 px: the VQ and
SigLIP both see an 8x8 grid of 16 px cells, so one image is 64 tokens either way (fast
enough for a 1 s round trip on a 2-core CPU). The tokenizer is byte-level BPE trained on
the prompts of both tasks over Shapes World scenes, so the vocabulary's words, phrases and
box numbers are single tokens or few.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.layout_text import format_object, normalize_box
from model.prompts import grounding_prompt, l2i_prompt
from model.tiny import JanusSpec, create_janus

SHAPES_SPEC = JanusSpec(
    image_size=128, patch_size=16,
    hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688,
    vision_hidden_size=128, vision_layers=2, vision_heads=4,
    vq_channels=64, vq_channel_multiplier=(1, 1, 1, 1, 1), vq_res_blocks=0,  # train/configs/shapes/vq.yaml
    codebook_size=1024, codebook_dim=8, vocab_size=2600, max_positions=512,
)


def shapes_corpus(n_scenes: int = 3000, seed: int = 12345) -> list[str]:
    """Prompt text of both tasks over random scenes (a split of its own, never test)."""
    from train.shapes.samplers import random_box_layout, scene_layout

    rng = np.random.default_rng(seed)
    corpus = []
    for i in range(n_scenes):
        layout = (scene_layout if i % 2 else random_box_layout)(rng)
        corpus.append(l2i_prompt(layout, ""))
        for obj in layout.objects:
            corpus.append(grounding_prompt(obj.phrase, "") + format_object(
                obj.phrase, normalize_box(obj.box, layout.width, layout.height)))
    return corpus


def init_model(out: Path, vq_dir: Path, spec: JanusSpec = SHAPES_SPEC, seed: int = 0) -> Path:
    """A random-weight EchoGen-Shapes with the trained VQ and the Shapes tokenizer."""
    return create_janus(out, spec, seed=seed, corpus=shapes_corpus(), vq_path=vq_dir)
