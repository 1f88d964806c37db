"""model.regrid: a checkpoint moved to a finer image-token grid keeps its LM and still runs both tasks."""

import pytest
import torch
from safetensors.torch import load_file

from model.regrid import RegridError, main, regrid, resize_positions


def _vq_dir(path, channel_multiplier, num_patches):
    from transformers import JanusVQVAE, JanusVQVAEConfig

    torch.manual_seed(1)
    config = JanusVQVAEConfig(embed_dim=8, num_embeddings=64, latent_channels=8, base_channels=32,
                              channel_multiplier=channel_multiplier, num_res_blocks=1, num_patches=num_patches)
    JanusVQVAE(config).save_pretrained(path, safe_serialization=True)
    return path


def test_resize_positions_keeps_a_constant_table_and_the_raster_order():
    assert torch.equal(resize_positions(torch.ones(16, 3), 8), torch.ones(64, 3))
    ramp = torch.arange(4.0).repeat(4).unsqueeze(1)  # [16, 1]: the column index, row-major
    resized = resize_positions(ramp, 8).view(8, 8)
    assert torch.all(resized[:, 1:] >= resized[:, :-1]) and torch.allclose(resized[0], resized[7])
    with pytest.raises(RegridError, match="square"):
        resize_positions(torch.ones(15, 3), 8)


def test_regrid_keeps_the_lm_swaps_the_vq_and_both_tasks_run(tmp_path, tiny_janus_dir):
    from model.echogen import EchoGen
    from model.layout import parse_layout

    vq = _vq_dir(tmp_path / "vq", [1, 1, 2], num_patches=8)  # 32 px from an 8x8 grid (the tiny model: 4x4)
    dest = regrid(tiny_janus_dir, vq, tmp_path / "fine", max_positions=2048)
    before, after = load_file(tiny_janus_dir / "model.safetensors"), load_file(dest / "model.safetensors")
    lm = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(before[lm], after[lm]) and torch.equal(before["lm_head.weight"], after["lm_head.weight"])
    vq_weights = load_file(vq / "model.safetensors")
    assert torch.equal(after["model.vqmodel.quantize.embedding.weight"], vq_weights["quantize.embedding.weight"])
    assert after["model.vision_model.embeddings.position_embedding.weight"].shape[0] == 64

    eg = EchoGen.load(dest)
    assert eg.num_image_tokens == 64 and eg.image_size == 32
    assert eg.model.config.text_config.max_position_embeddings == 2048
    layout = parse_layout({"width": 32, "height": 32, "objects": [{"phrase": "red circle", "box": [2, 2, 20, 20]}]})
    (image,) = eg.generate([layout], num_images=1, seed=0).images[0]
    assert image.size == (32, 32)
    ((answer,),) = eg.ground([image], [["red circle"]])
    assert answer.phrase == "red circle"  # one (possibly invalid) box per phrase, from 64 SigLIP features


def test_regrid_refuses_a_vq_of_another_image_size(tmp_path, tiny_janus_dir, capsys):
    vq = _vq_dir(tmp_path / "vq", [1, 1, 2], num_patches=16)  # 64 px images, the model's are 32 px
    with pytest.raises(RegridError, match="64 px"):
        regrid(tiny_janus_dir, vq, tmp_path / "out")
    assert main(["--model", str(tiny_janus_dir), "--vq", str(vq), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: the VQ makes 64 px images")
    assert main(["--model", str(tmp_path / "missing"), "--vq", str(vq), "--out", str(tmp_path / "o")]) == 2
