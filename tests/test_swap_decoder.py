"""model.swap_decoder: a model takes a new decoder only when every code keeps its meaning."""

import pytest
import torch
from safetensors.torch import load_file

from model.regrid import RegridError
from model.swap_decoder import main, swap_decoder


def _model_vq(model_dir, path, decoder_shift=0.0, encoder_shift=0.0):
    """The model's own VQ saved alone, its decoder and/or encoder nudged."""
    from transformers import JanusForConditionalGeneration

    vq = JanusForConditionalGeneration.from_pretrained(model_dir).model.vqmodel
    with torch.no_grad():
        vq.decoder.conv_out.bias += decoder_shift
        vq.encoder.conv_in.bias += encoder_shift
    vq.save_pretrained(path, safe_serialization=True)
    return path


def test_swap_replaces_only_the_decoder_so_the_same_codes_draw_new_pixels(tmp_path, tiny_janus_dir):
    from model.echogen import EchoGen
    from model.layout import parse_layout

    vq = _model_vq(tiny_janus_dir, tmp_path / "vq", decoder_shift=0.5)
    dest = swap_decoder(tiny_janus_dir, vq, tmp_path / "swapped")
    before, after = load_file(tiny_janus_dir / "model.safetensors"), load_file(dest / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"model.vqmodel.decoder.conv_out.bias"}
    torch.testing.assert_close(after["model.vqmodel.decoder.conv_out.bias"],
                               before["model.vqmodel.decoder.conv_out.bias"] + 0.5)
    layout = parse_layout({"width": 32, "height": 32, "objects": [{"phrase": "red circle", "box": [2, 2, 20, 20]}]})
    old, new = EchoGen.load(tiny_janus_dir), EchoGen.load(dest)
    old_draw, new_draw = (eg.generate([layout], num_images=1, seed=0) for eg in (old, new))
    assert torch.equal(old_draw.tokens, new_draw.tokens)  # the LM is untouched: the same codes
    (old_image,), (new_image,) = old_draw.images[0], new_draw.images[0]
    assert old_image.size == new_image.size and old_image.tobytes() != new_image.tobytes()


def test_swap_refuses_a_vq_that_would_change_the_codes(tmp_path, tiny_janus_dir, capsys):
    vq = _model_vq(tiny_janus_dir, tmp_path / "vq", encoder_shift=0.5)
    with pytest.raises(RegridError, match="encoder.conv_in.bias differs"):
        swap_decoder(tiny_janus_dir, vq, tmp_path / "swapped")
    assert main(["--model", str(tiny_janus_dir), "--vq", str(vq), "--out", str(tmp_path / "cli")]) == 2
    assert "change meaning" in capsys.readouterr().err
    assert main(["--model", str(tiny_janus_dir), "--vq", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: no VQ at")
    assert not (tmp_path / "cli").exists()
