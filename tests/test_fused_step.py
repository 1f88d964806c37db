"""The fused decode step against the Llama layers' own forward."""

import pytest
import torch

from model.fused_step import FusedLayers, signed_sin
from model.kv_cache import preallocated_cache
from model.matmul import half_matmul_available

needs_fbgemm = pytest.mark.skipif(not half_matmul_available(), reason="this torch build has no fbgemm fp16 GEMM")


def _step_both_ways(lm, prompt_len: int = 5, rows: int = 3, half: bool = False):
    """Prefill random embeddings, then one step through the layers' forward and through FusedLayers."""
    torch.manual_seed(0)
    dim = lm.config.hidden_size
    prompt, token = torch.randn(rows, prompt_len, dim), torch.randn(rows, 1, dim)
    positions = torch.arange(prompt_len + 1).expand(rows, -1)
    dummy = torch.empty(0)
    cos, sin = lm.rotary_emb(dummy, position_ids=positions[:, -1:])
    outputs = []
    for fused in (None, FusedLayers.for_lm(lm, half)):
        cache = preallocated_cache(lm.config.num_hidden_layers, prompt_len + 1)
        with torch.no_grad():
            lm(inputs_embeds=prompt, position_ids=positions[:, :-1], past_key_values=cache, use_cache=True)
            if fused is None:
                hidden = token
                for layer in lm.layers:
                    hidden = layer(hidden, attention_mask=None, position_embeddings=(cos, sin),
                                   position_ids=positions[:, -1:], past_key_values=cache, use_cache=True)
            else:
                hidden = fused(token, cos, signed_sin(sin), cache, None)
        outputs.append(hidden)
    return outputs


def test_fused_step_equals_the_layers_forward(tiny_echogen):
    lm = tiny_echogen.model.model.language_model
    reference, fused = _step_both_ways(lm)
    assert FusedLayers.for_lm(lm) is not None
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


def test_fused_weights_follow_in_place_updates(tiny_janus_dir):
    from model.echogen import EchoGen

    lm = EchoGen.load(tiny_janus_dir).model.model.language_model
    before = FusedLayers.for_lm(lm)
    with torch.no_grad():
        lm.layers[0].self_attn.k_proj.weight.mul_(3.0)  # what an optimizer step does: in place
    after = FusedLayers.for_lm(lm)
    assert after is not before
    reference, fused = _step_both_ways(lm)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    assert FusedLayers.for_lm(lm) is after  # unchanged weights: the cached copy is reused


def test_unmerged_lora_is_not_fused(tiny_janus_dir):
    from peft import LoraConfig, get_peft_model

    from model.echogen import EchoGen

    model = EchoGen.load(tiny_janus_dir).model
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert FusedLayers.build(model.model.language_model) is None


def test_rotation_is_llamas_bit_for_bit():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    from model.fused_step import _rotate

    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 1, 16), torch.randn(2, 2, 1, 16)
    cos, sin = torch.randn(2, 1, 16), torch.randn(2, 1, 16)  # [R, 1, d] as rotary_emb gives them
    expected_q, expected_k = apply_rotary_pos_emb(q, k, cos, sin)
    signed = signed_sin(sin).unsqueeze(1)
    assert torch.equal(_rotate(q, cos.unsqueeze(1), signed), expected_q)
    assert torch.equal(_rotate(k, cos.unsqueeze(1), signed), expected_k)


@needs_fbgemm
def test_half_fused_step_is_the_step_on_float16_rounded_weights(tiny_janus_dir):
    from model.echogen import EchoGen

    lm = EchoGen.load(tiny_janus_dir, half_weights=False).model.model.language_model
    assert FusedLayers.for_lm(lm, half=True) is not FusedLayers.for_lm(lm)  # one cached copy per precision
    with torch.no_grad():
        for module in lm.layers.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(module.weight.half().float())
    reference, fused = _step_both_ways(lm, half=True)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
