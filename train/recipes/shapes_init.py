"""The EchoGen-Shapes architecture and its from-scratch initialization.

A Janus with a small Llama LM, a small SigLIP encoder and our VQ, at 128 px. transformers ties
the VQ's latent grid to SigLIP's patch grid, so one image is grid x grid tokens both ways:
- grid 8 (the shipped model): 16 px cells, 64 tokens;
- grid 16: 8 px cells, 256 tokens, a VQ that downsamples 8x. Its round trips keep small shapes
  that 16 px cells blur away (the VQ ceiling in train/README.md), at 4x the sequence length.
The tokenizer is byte-level BPE trained on the prompts of both tasks over Shapes World scenes,
so the vocabulary's words, phrases and box numbers are single tokens or few.
"""

from __future__ import annotations

from dataclasses import replace
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
SHAPES_GRID16_SPEC = replace(  # train/configs/shapes/vq_grid16.yaml; 256 image tokens + a prompt need > 512 positions
    SHAPES_SPEC, patch_size=8, vq_channel_multiplier=(1, 1, 1, 1), max_positions=1024,
)
GRIDS = {  # image tokens per side -> (architecture, VQ training config)
    8: (SHAPES_SPEC, "train/configs/shapes/vq.yaml"),
    16: (SHAPES_GRID16_SPEC, "train/configs/shapes/vq_grid16.yaml"),
}


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
