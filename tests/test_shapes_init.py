"""The built-in architectures: each grid's spec agrees with the VQ config that trains its tokenizer."""

import pytest

from model.tiny import janus_config
from train import vq
from train.config import load_config
from train.recipes.shapes import ROOT
from train.recipes.shapes_init import GRIDS


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_each_grid_spec_matches_its_vq_config(grid):
    spec, vq_yaml = GRIDS[grid]
    trained = load_config(vq.VQRun, ["--config", str(ROOT / vq_yaml)]).vq
    assert spec.num_image_tokens == grid * grid
    assert (trained.image_size, trained.codebook_size, trained.codebook_dim) == (
        spec.image_size, spec.codebook_size, spec.codebook_dim)
    assert (trained.base_channels, tuple(trained.channel_multiplier), trained.num_res_blocks) == (
        spec.vq_channels, spec.vq_channel_multiplier, spec.vq_res_blocks)
    # transformers derives the VQ grid from SigLIP's patch grid: both must be `grid`.
    config = janus_config(spec, vocab_size=spec.vocab_size, pad_token_id=0, image_token_id=1)
    assert config.vq_config.num_patches == grid
    assert vq.vq_config(trained).num_patches == grid
    # A layout prompt of the most objects plus the image must fit the LM's positions.
    assert spec.max_positions >= spec.num_image_tokens + 16 * 24
