"""The generation loop against transformers' reference, seeds, and the training-side views."""

import json

import pytest
import torch

from model import generation, inputs
from model.layout import parse_layout
from model.matmul import half_matmul_available
from model.prompts import l2i_prompt
from model.results import SamplingConfig

LAYOUT = parse_layout({"width": 32, "height": 32, "caption": "a red circle and a blue square",
                       "objects": [{"phrase": "red circle", "box": [2, 2, 14, 14]},
                                   {"phrase": "blue square", "box": [16, 10, 30, 30]}]})
OTHER = parse_layout({"width": 32, "height": 32, "caption": "",
                      "objects": [{"phrase": "green star", "box": [4, 4, 28, 28]}]})


def reference(eg, prompts, cfg):
    enc = eg.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    eg.model.generation_config.generation_kwargs = {"boi_token_id": eg.special.boi}
    return eg.model.generate(**enc, generation_mode="image", do_sample=False, guidance_scale=cfg)


# transformers' image generate always doubles rows for CFG and breaks at guidance 1, so compare with cfg > 1.
@pytest.mark.parametrize("cfg", [3.0, 5.0])
def test_greedy_matches_transformers_generate(spread_echogen, cfg):
    eg = spread_echogen
    prompt = l2i_prompt(LAYOUT, eg.tokenizer.boi_token)
    ours = eg.generate_tokens([prompt], SamplingConfig(cfg=cfg, temperature=0.0), None)
    ref = reference(eg, [prompt], cfg)
    assert len(set(ours[0].tolist())) > 2, "degenerate test: greedy tokens barely vary"
    assert torch.equal(ours, ref)


def test_greedy_batch_with_shared_prefill_matches_reference(spread_echogen):
    eg = spread_echogen
    prompt = l2i_prompt(LAYOUT, eg.tokenizer.boi_token)
    ours = eg.generate_tokens([prompt] * 3, SamplingConfig(cfg=5.0, temperature=0.0), None)
    assert torch.equal(ours, reference(eg, [prompt] * 3, 5.0))


def test_padded_batch_equals_rows_run_alone(spread_echogen):
    eg = spread_echogen
    prompts = [l2i_prompt(LAYOUT, eg.tokenizer.boi_token), l2i_prompt(OTHER, eg.tokenizer.boi_token)]
    greedy = SamplingConfig(cfg=5.0, temperature=0.0)
    together = eg.generate_tokens(prompts, greedy, None)
    for row, prompt in enumerate(prompts):
        assert torch.equal(together[row], eg.generate_tokens([prompt], greedy, None)[0])


def test_same_seed_same_image_different_seed_different_image(spread_echogen):
    eg = spread_echogen
    sampling = SamplingConfig(cfg=3.0, temperature=1.0)
    a = eg.generate([LAYOUT], num_images=2, seed=7, sampling=sampling)
    b = eg.generate([LAYOUT], num_images=2, seed=7, sampling=sampling)
    c = eg.generate([LAYOUT], num_images=1, seed=8, sampling=sampling)
    assert torch.equal(a.tokens, b.tokens)
    assert a.images[0][0].tobytes() == b.images[0][0].tobytes()
    assert not torch.equal(a.tokens[0, 0], a.tokens[0, 1])  # seeds 7 and 8 differ
    assert torch.equal(a.tokens[0, 1], c.tokens[0, 0])  # candidate k is seed + k, whatever the batch
    assert a.seeds == [7, 8]


def test_candidate_does_not_depend_on_batch_neighbours(spread_echogen):
    eg = spread_echogen
    sampling = SamplingConfig(cfg=3.0, temperature=1.0, top_k=20)
    alone = eg.generate([LAYOUT], num_images=1, seed=3, sampling=sampling)
    mixed = eg.generate([OTHER, LAYOUT], num_images=1, seed=3, sampling=sampling)
    assert torch.equal(alone.tokens[0], mixed.tokens[1])


@pytest.mark.skipif(not half_matmul_available(), reason="this torch build has no fbgemm fp16 GEMM")
def test_half_weights_draw_what_the_exact_loop_draws_on_rounded_weights(tiny_janus_dir):
    """The CPU default: the loop on float16-packed weights (LM layers, image head) is the exact
    float32 loop run on those weights rounded to float16."""
    from model.echogen import EchoGen
    from model.tiny import spread_weights

    half, exact = EchoGen.load(tiny_janus_dir), EchoGen.load(tiny_janus_dir, half_weights=False)
    assert half.half_weights and not exact.half_weights
    for eg in (half, exact):
        spread_weights(eg.model)
    with torch.no_grad():
        for name, module in exact.model.named_modules():
            if isinstance(module, torch.nn.Linear) and (".layers." in name or "generation_head" in name):
                module.weight.copy_(module.weight.half().float())
    prompts = [l2i_prompt(layout, half.tokenizer.boi_token) for layout in (LAYOUT, OTHER)]
    greedy = SamplingConfig(cfg=5.0, temperature=0.0)
    drawn = half.generate_tokens(prompts, greedy, None)
    assert len(set(drawn[0].tolist())) > 2, "degenerate test: greedy tokens barely vary"
    assert torch.equal(drawn, exact.generate_tokens(prompts, greedy, None))
    for eg, used in ((half, True), (exact, False)):  # which weight copies each loop built
        assert hasattr(eg.model.model.language_model, "_echogen_fused_layers_half") is used
        assert hasattr(eg.model.model.generation_head, "_echogen_fast_head_half") is used


def test_half_weights_need_a_float32_cpu_model(tiny_janus_dir):
    from model.echogen import EchoGen

    assert not EchoGen.load(tiny_janus_dir, dtype=torch.bfloat16).half_weights
    with pytest.raises(ValueError, match="float32 model on a CPU"):
        EchoGen.load(tiny_janus_dir, dtype=torch.bfloat16, half_weights=True)


def test_images_have_the_model_size(tiny_echogen):
    gen = tiny_echogen.generate([LAYOUT], num_images=1)
    assert gen.images[0][0].size == (tiny_echogen.image_size, tiny_echogen.image_size)
    assert gen.images[0][0].mode == "RGB"
    assert gen.tokens.shape == (1, 1, tiny_echogen.num_image_tokens)


def test_filter_logits_top_k_and_top_p():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert torch.isinf(generation.filter_logits(logits, 2, None)[0, 2:]).all()
    assert not torch.isinf(generation.filter_logits(logits, 2, None)[0, :2]).any()
    probs = logits.softmax(-1)[0]  # ~[0.64, 0.24, 0.09, 0.03]
    kept = ~torch.isinf(generation.filter_logits(logits, None, 0.7)[0])
    assert kept.tolist() == [True, True, False, False]
    assert probs[0] < 0.7 < probs[:2].sum()
    assert (~torch.isinf(generation.filter_logits(logits, None, 0.5)[0])).tolist() == [True, False, False, False]


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    gens = [torch.Generator().manual_seed(i) for i in range(3000)]
    counts = torch.zeros(3)
    for g in gens:
        counts[generation.sample(logits, SamplingConfig(temperature=1.0), [g])[0]] += 1
    assert torch.allclose(counts / counts.sum(), torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


def _prompt_embeds(eg, layouts, cfg):
    batch = inputs.encode_prompts(eg.tokenizer, [l2i_prompt(l, eg.tokenizer.boi_token) for l in layouts])
    if cfg > 1:
        batch = inputs.cfg_batch(batch, eg.special)
    return inputs.embed_prompts(eg.model, batch.input_ids), batch.attention_mask


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_teacher_forced_logits_agree_with_the_loop(spread_echogen, cfg):
    """Greedy tokens are the argmax of the teacher-forced (CFG) logits at every position."""
    eg = spread_echogen
    layouts = [LAYOUT, OTHER]
    tokens = eg.generate_tokens([l2i_prompt(l, eg.tokenizer.boi_token) for l in layouts],
                                SamplingConfig(cfg=cfg, temperature=0.0), None)
    embeds, mask = _prompt_embeds(eg, layouts, cfg)
    with torch.no_grad():
        logits = generation.image_logits(eg.model, embeds, mask, tokens, cfg=cfg)
    assert logits.shape == (2, eg.num_image_tokens, eg.model.config.vq_config.num_embeddings)
    assert torch.equal(logits.argmax(-1), tokens)
    logp = generation.image_logprobs(logits, tokens)
    assert logp.shape == tokens.shape and (logp <= 0).all()


def test_soft_tokens_match_hard_tokens_when_one_hot(tiny_echogen):
    eg = tiny_echogen
    tokens = torch.randint(0, eg.model.config.vq_config.num_embeddings, (2, eg.num_image_tokens))
    one_hot = torch.nn.functional.one_hot(tokens, eg.model.config.vq_config.num_embeddings).float()
    with torch.no_grad():
        assert torch.allclose(generation.decode_soft_image(eg.model, one_hot),
                              generation.decode_image_tokens(eg.model, tokens), atol=1e-5)
        assert torch.allclose(generation.soft_image_embeddings(eg.model, one_hot),
                              eg.model.prepare_embeddings_for_image_generation(tokens), atol=1e-6)


def test_soft_image_is_differentiable(tiny_echogen):
    eg = tiny_echogen
    logits = torch.randn(1, eg.num_image_tokens, eg.model.config.vq_config.num_embeddings, requires_grad=True)
    probs = torch.nn.functional.gumbel_softmax(logits, tau=1.0, hard=True)
    generation.decode_soft_image(eg.model, probs).mean().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_bench_reports_speed_and_round_trips_on_a_tiny_model(tiny_janus_dir, capsys):
    from model.bench import main as bench_main

    assert bench_main(["--model", str(tiny_janus_dir), "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["identical_greedy_tokens"] is True
    assert result["half_weights"] is half_matmul_available()  # the CPU default, timed against float32 weights
    for key in ("ours_ms_per_token", "speedup_batch1", "roundtrip_s", "roundtrip_greedy_s",
                "roundtrip_float32_weights_s", "roundtrip_2_candidates_s"):
        assert result[key] > 0, key
