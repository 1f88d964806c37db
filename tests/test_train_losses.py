"""Stage losses on a tiny random Janus: targets, Gumbel-Softmax, DJO's gradient path, GRPO's KL."""

import dataclasses
import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model import inputs
from model.layout_text import normalize_box
from model.loading import save_sampling_defaults
from model.results import SamplingConfig
from model.tokens import SpecialTokens
from train import cycle_rl, djo, loop, pmtp
from train.config import ConfigError, load_config
from train.losses import (
    IGNORE, BoxNumberTargets, annealed_tau, grounded_records, grounding_inputs, grounding_loss, gumbel_softmax,
    l2i_inputs,
    packed_grounding_inputs, straight_through, supervised_losses, through_frozen, to_siglip,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (two spin against each other on a busy 2-core CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    from train.data import synthesize

    out = tmp_path_factory.mktemp("shapes")
    synthesize(out, 8, 32)
    return out


def make_run(stage_cls, tiny_janus_dir, shapes_dir, tmp_path, *extra, need_reference=False):
    cfg = load_config(stage_cls, ["--model.path", str(tiny_janus_dir), "--data.data_dir", str(shapes_dir),
                                  "--train.output_dir", str(tmp_path), "--train.batch_size", "2", *extra])
    return loop.setup(cfg, need_reference=need_reference)


def test_grounding_labels_are_exactly_the_answer(tiny_echogen):
    tok = tiny_echogen.tokenizer
    special = SpecialTokens.from_tokenizer(tok)
    box = normalize_box((2, 4, 16, 30), 32, 32)
    g = grounding_inputs(tok, special, [(0, "red circle", box), (1, "a much longer phrase here", (0, 0, 1000, 1000))],
                         4, "cpu")
    assert g.input_ids.shape == g.labels.shape == g.attention_mask.shape
    assert g.image_index.tolist() == [0, 1]
    answer = tok.decode(g.labels[0][g.labels[0] != IGNORE])
    assert answer == f"[{box[0]}, {box[1]}, {box[2]}, {box[3]}]</box>{tok.eos_token}"
    prompt = tok.decode(g.input_ids[0][(g.labels[0] == IGNORE) & (g.attention_mask[0] == 1)])
    assert prompt.endswith("<ref>red circle</ref><box>") and prompt.count(tok.image_token) == 4
    assert (g.attention_mask[:, -1] == 1).all()  # left padding


PACK_QUERIES = [  # (image, phrase, box): phrases sharing words, a prefix phrase, one image with one query
    (0, "red circle", (10, 20, 300, 400)), (1, "blue square", (0, 0, 1000, 1000)),
    (0, "red circle in front", (500, 510, 900, 990)), (0, "leftmost green star", (1, 2, 3, 4)),
    (2, "a much longer phrase than the others here", (250, 250, 750, 750)), (1, "blue squares", (7, 8, 9, 10)),
]


@pytest.mark.parametrize("soft", [False, True])
def test_packed_grounding_loss_equals_one_row_per_query(spread_echogen, soft):
    model, tok = spread_echogen.model, spread_echogen.tokenizer
    special = SpecialTokens.from_tokenizer(tok)
    numbers = BoxNumberTargets.from_tokenizer(tok, 15.0) if soft else None
    features = torch.randn(3, 4, model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    per_query = grounding_inputs(tok, special, PACK_QUERIES, 4, "cpu")
    packed = packed_grounding_inputs(tok, special, PACK_QUERIES, 4, "cpu")
    assert packed.input_ids.shape[0] == 3 and packed.image_index.tolist() == [0, 1, 2]
    assert int((packed.labels != IGNORE).sum()) == int((per_query.labels != IGNORE).sum())
    assert packed.input_ids.numel() < per_query.input_ids.numel()
    with torch.no_grad():
        expected = grounding_loss(model, per_query, features, numbers)
        got = grounding_loss(model, packed, features, numbers)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_packed_queries_do_not_see_each_other(spread_echogen):
    """Changing the first query's phrase leaves the second query's answer logits unchanged."""
    model, tok = spread_echogen.model, spread_echogen.tokenizer
    special = SpecialTokens.from_tokenizer(tok)
    features = torch.randn(1, 4, model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(1))

    def second_answer_logits(first_phrase: str) -> torch.Tensor:
        g = packed_grounding_inputs(tok, special, [(0, first_phrase, (1, 2, 3, 4)), (0, "blue star", (5, 6, 7, 8))],
                                    4, "cpu")
        embeds = inputs.embed_prompts(model, g.input_ids, features, g.image_index, g.image_token_id)
        with torch.no_grad():
            hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=g.attention_mask,
                                                position_ids=g.position_ids).last_hidden_state
        answer = (g.labels[0] != IGNORE).nonzero().squeeze(1)
        return model.lm_head(hidden[0, answer[-8:] - 1])  # the second query's answer ends the row

    torch.testing.assert_close(second_answer_logits("black diamond behind"), second_answer_logits("red circle"),
                               rtol=1e-5, atol=1e-5)


def test_grounded_records_are_a_seeded_share_of_at_least_one():
    assert grounded_records(4, 1.0, None) == [0, 1, 2, 3]  # share 1 draws nothing
    picked = grounded_records(16, 0.25, np.random.default_rng(0))
    assert len(picked) == 4 and picked == sorted(set(picked)) and all(0 <= i < 16 for i in picked)
    assert picked == grounded_records(16, 0.25, np.random.default_rng(0))
    assert grounded_records(16, 0.25, np.random.default_rng(1)) != picked
    assert len(grounded_records(3, 0.1, np.random.default_rng(0))) == 1


def test_pmtp_grounding_share_grounds_part_of_the_batch(tiny_janus_dir, shapes_dir, tmp_path):
    """Every record trains L2I; only the grounded ones bring pixels and queries, indexed among themselves."""
    run = make_run(pmtp.PMTPRun, tiny_janus_dir, shapes_dir, tmp_path, "--full", "--train.batch_size", "4",
                   "--pmtp.grounding_share", "0.5")
    make_batch, loss_fn, _ = pmtp.build(run)
    batch = make_batch(0, 0)
    assert batch.l2i.input_ids.shape[0] == batch.image_tokens.shape[0] == 4
    assert batch.pixels.shape[0] == 2 and set(batch.grounding.image_index.tolist()) <= {0, 1}
    loss, stats = loss_fn(run.model, batch)
    assert torch.isfinite(loss) and {"l2i_loss", "grounding_loss"} <= set(stats)
    with pytest.raises(ConfigError, match="grounding_share"):
        pmtp.PMTPConfig(grounding_share=0.0)


def test_caption_dropout_uses_the_unconditional_prompt(tiny_echogen):
    from model.layout import parse_layout

    tok = tiny_echogen.tokenizer
    special = SpecialTokens.from_tokenizer(tok)
    layout = parse_layout({"width": 32, "height": 32, "objects": [{"phrase": "red circle", "box": [1, 1, 9, 9]}]})
    batch = l2i_inputs(tok, special, [layout, layout], [False, True], "cpu")
    assert torch.equal(batch.input_ids[0].unique().sort().values, batch.input_ids[0].unique().sort().values)
    kept = set(batch.input_ids[1].tolist())
    assert kept == {special.pad, special.bos, special.boi}
    assert batch.input_ids[1, -1] == special.boi == batch.input_ids[0, -1]


def test_gumbel_softmax_is_seeded_one_hot_and_follows_the_distribution():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).expand(4000, 3).contiguous()
    a = gumbel_softmax(logits, 0.5, True, torch.Generator().manual_seed(0))
    b = gumbel_softmax(logits, 0.5, True, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert torch.equal(a.sum(-1), torch.ones(4000)) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert a.mean(0).tolist() == pytest.approx([0.6, 0.3, 0.1], abs=0.03)
    soft = gumbel_softmax(logits[:2], 1.0, False, torch.Generator().manual_seed(0))
    assert torch.allclose(soft.sum(-1), torch.ones(2)) and (soft > 0).all()


def test_straight_through_forward_is_one_hot_backward_is_soft():
    logits = torch.randn(1, 2, 5, requires_grad=True)
    tokens = torch.tensor([[3, 1]])
    y = straight_through(logits, tokens, tau=0.5)
    assert torch.equal(y.argmax(-1), tokens) and torch.equal(y.detach().sum(-1), torch.ones(1, 2))
    (y * torch.arange(5.0)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_tau_anneals_to_its_floor():
    assert annealed_tau(0, 1.0, 0.1, 0.01) == 1.0
    assert annealed_tau(100, 1.0, 0.1, 0.01) == pytest.approx(math.exp(-1))
    assert annealed_tau(10_000, 1.0, 0.1, 0.01) == 0.1


def test_to_siglip_is_identity_for_janus_normalization(tiny_echogen):
    pixels = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(to_siglip(pixels, tiny_echogen.processor.image_processor, 32), pixels)
    assert to_siglip(pixels, tiny_echogen.processor.image_processor, 16).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("rollout", ["teacher_forced", "autoregressive"])
def test_djo_grounding_loss_reaches_the_generator(tiny_janus_dir, shapes_dir, tmp_path, rollout):
    """With only the DJO term, the generation head (reachable only through the generated image) gets gradient."""
    run = make_run(djo.DJORun, tiny_janus_dir, shapes_dir, tmp_path, "--full", "--djo.rollout", rollout,
                   "--djo.l2i_weight", "0", "--djo.grounding_weight", "0", "--djo.caption_dropout", "0")
    make_batch, loss_fn, _ = djo.build(run)
    batch = make_batch(0, 0)
    loss, stats = loss_fn(run.model, batch)
    assert stats["djo_loss"] > 0
    loss.backward()
    head = run.janus.model.generation_head.vision_head.weight.grad
    assert head is not None and head.abs().sum() > 0
    assert run.janus.model.vqmodel.decoder.conv_in.weight.grad is None  # the VQ stays frozen

    run.model.zero_grad(set_to_none=True)  # control: real-image grounding never reaches the generation head
    ground_only, _, _ = supervised_losses(run.janus, batch.sup, 0.0, 1.0)
    ground_only.backward()
    head = run.janus.model.generation_head.vision_head.weight.grad
    assert head is None or head.abs().sum() == 0


def test_through_frozen_keeps_the_value_and_the_input_gradient_but_spares_the_parameters():
    torch.manual_seed(0)
    source, judge = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)

    def loss_of(x):
        return judge(x.tanh()).square().sum()

    x = source(torch.randn(5, 3))
    plain = loss_of(x)
    (want,) = torch.autograd.grad(plain, source.weight, retain_graph=True)
    frozen = through_frozen(loss_of, x)
    assert torch.allclose(frozen, plain)
    frozen.backward()
    assert torch.allclose(source.weight.grad, want)
    assert judge.weight.grad is None and judge.bias.grad is None
    assert torch.equal(through_frozen(loss_of, x.detach()), loss_of(x.detach()))  # no graph: plain loss


@pytest.mark.parametrize("frozen", [False, True])
def test_djo_frozen_grounder_trains_only_the_generator(tiny_janus_dir, shapes_dir, tmp_path, frozen):
    """DJO term alone: the generation head learns either way; the vision tower (used only by the
    grounding pass) learns from generated images unless the grounder is frozen."""
    run = make_run(djo.DJORun, tiny_janus_dir, shapes_dir, tmp_path, "--full", "--djo.l2i_weight", "0",
                   "--djo.grounding_weight", "0", "--djo.caption_dropout", "0", "--djo.frozen_grounder", str(frozen))
    make_batch, loss_fn, _ = djo.build(run)
    loss, _ = loss_fn(run.model, make_batch(0, 0))
    loss.backward()
    assert run.janus.model.generation_head.vision_head.weight.grad.abs().sum() > 0
    vision = [p.grad for p in run.janus.model.vision_model.parameters() if p.requires_grad]
    assert vision, "the tiny model trains its vision tower"
    touched = any(g is not None and g.abs().sum() > 0 for g in vision)
    assert touched != frozen


def test_djo_frozen_grounder_refuses_fp16(tiny_janus_dir, shapes_dir, tmp_path):
    """Its inner gradient is taken outside the fp16 loss scaler, so fp16 is a clear error."""
    run = make_run(djo.DJORun, tiny_janus_dir, shapes_dir, tmp_path, "--djo.frozen_grounder", "true")
    fp16 = dataclasses.replace(run, accelerator=SimpleNamespace(mixed_precision="fp16", device=run.device))
    with pytest.raises(ConfigError, match="fp16"):
        djo.build(fp16)
    djo.build(run)  # the same settings without fp16 build


def test_djo_term_differentiates_the_l2i_logits_under_lora(tiny_janus_dir, shapes_dir, tmp_path):
    run = make_run(djo.DJORun, tiny_janus_dir, shapes_dir, tmp_path, "--djo.caption_dropout", "0")
    make_batch, _, _ = djo.build(run)
    batch = make_batch(0, 0)
    _, _, logits = supervised_losses(run.janus, batch.sup, 1.0, 1.0)
    term = djo.djo_term(run.janus, batch, run.cfg.djo, logits, run.processor.image_processor)
    (grad,) = torch.autograd.grad(term, logits)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("full", [False, True])
def test_kl_is_zero_before_the_first_update_and_positive_after(tiny_janus_dir, shapes_dir, tmp_path, full):
    run = make_run(cycle_rl.CycleRLRun, tiny_janus_dir, shapes_dir, tmp_path, "--rl.group_size", "4",
                   "--train.batch_size", "1", "--rl.cfg", "3.0", "--rl.kl_beta", "0.1",
                   *(["--full"] if full else []), need_reference=True)
    assert (run.reference is not None) == full
    make_batch, loss_fn, _ = cycle_rl.build(run)
    batch = make_batch(0, 0)
    assert batch.tokens.shape == (4, 16) and batch.advantages.shape == (4,)
    assert torch.isfinite(batch.ref_logp).all()
    loss, stats = loss_fn(run.model, batch)
    assert stats["kl"].item() == 0.0 and stats["ratio"].item() == 1.0

    batch.advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    optimizer = torch.optim.SGD([p for p in run.model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        loss_fn(run.model, batch)[0].backward()
        optimizer.step()
    _, stats = loss_fn(run.model, batch)
    assert stats["kl"].item() > 0


def test_rollouts_are_reused_for_num_iterations(tiny_janus_dir, shapes_dir, tmp_path):
    run = make_run(cycle_rl.CycleRLRun, tiny_janus_dir, shapes_dir, tmp_path, "--rl.group_size", "2",
                   "--train.batch_size", "1", "--rl.num_iterations", "2", "--train.max_steps", "4",
                   "--train.save_every", "2", "--rl.layouts", "random")
    make_batch, _, _ = cycle_rl.build(run)
    first = make_batch(0, 0)
    assert make_batch(1, 0) is first and first.old_logp is not None
    assert torch.allclose(first.old_logp, first.ref_logp)  # nothing trained yet
    assert make_batch(2, 0) is not first
    assert not np.array_equal(make_batch(2, 0).tokens.numpy(), first.tokens.numpy())


@pytest.mark.parametrize("flags, expected", [((), (2.0, 0.5)), (("--rl.cfg", "4"), (4.0, 0.5)),
                                              (("--rl.cfg", "1", "--rl.temperature", "0.9"), (1.0, 0.9))])
def test_rollouts_draw_at_the_models_own_sampling_unless_told(tiny_janus_dir, shapes_dir, tmp_path, flags, expected):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_janus_dir, model_dir)
    save_sampling_defaults(model_dir, SamplingConfig(cfg=2.0, temperature=0.5))
    run = make_run(cycle_rl.CycleRLRun, model_dir, shapes_dir, tmp_path / "run", "--rl.group_size", "2",
                   "--train.batch_size", "1", *flags, need_reference=True)
    make_batch, loss_fn, _ = cycle_rl.build(run)
    rollouts = make_batch.__self__  # build's Rollouts
    assert (rollouts.sampling.cfg, rollouts.sampling.temperature) == expected
    assert rollouts.sampling.top_k is None and rollouts.sampling.top_p is None
    batch = rollouts.batch(0, 0)
    assert batch.prompt.input_ids.shape[0] == (4 if expected[0] > 1 else 2)  # [cond; uncond] rows only with CFG
    _, stats = loss_fn(run.model, batch)
    assert stats["kl"].item() == 0.0  # the loss scores the rollouts under the distribution that drew them


def test_detector_reward_rollouts_skip_grounding_and_refuse_other_phrases(tiny_janus_dir, shapes_dir, tmp_path):
    run = make_run(cycle_rl.CycleRLRun, tiny_janus_dir, shapes_dir, tmp_path / "a", "--rl.group_size", "2",
                   "--train.batch_size", "1", "--rl.reward", "detector", need_reference=True)
    make_batch, loss_fn, _ = cycle_rl.build(run)
    batch = make_batch(0, 0)
    assert batch.advantages.shape == (2,) and "valid" not in batch.stats  # nothing was grounded
    assert 0.0 <= batch.stats["reward"].item() <= 1.0
    assert torch.isfinite(loss_fn(run.model, batch)[0])

    layouts = tmp_path / "layouts.json"
    cat = {"width": 32, "height": 32, "objects": [{"phrase": "a teal cat", "box": [1, 1, 20, 20]}]}
    layouts.write_text(json.dumps([cat]))
    run = make_run(cycle_rl.CycleRLRun, tiny_janus_dir, shapes_dir, tmp_path / "b", "--rl.group_size", "2",
                   "--rl.reward", "detector", "--rl.layouts", str(layouts), "--data.data_dir", "", need_reference=True)
    with pytest.raises(ConfigError, match="Shapes World"):
        cycle_rl.build(run)
    with pytest.raises(ConfigError, match="rl.reward"):
        load_config(cycle_rl.CycleRLRun, ["--rl.reward", "clip"])


def _shipped_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained("assets/echogen-shapes")


def test_box_number_targets_read_whole_number_tokens():
    from train.losses import BoxNumberTargets

    tokenizer = _shipped_tokenizer()
    numbers = BoxNumberTargets.from_tokenizer(tokenizer, sigma=10.0)
    first, spaced = tokenizer.convert_tokens_to_ids(["123", "Ġ456"])
    assert numbers.values[first] == 123 and not numbers.spaced[first]
    assert numbers.values[spaced] == 456 and numbers.spaced[spaced]
    assert numbers.values[tokenizer.convert_tokens_to_ids("<box>")] == -1


def test_box_number_loss_rewards_near_misses():
    from train.losses import BoxNumberTargets

    tokenizer = _shipped_tokenizer()
    numbers = BoxNumberTargets.from_tokenizer(tokenizer, sigma=10.0)
    target, near, far = tokenizer.convert_tokens_to_ids(["Ġ500", "Ġ508", "Ġ891"])
    assert min(numbers.values[[target, near, far]]) >= 0

    def loss_when_peaked_at(token):
        logits = torch.zeros(1, len(tokenizer))
        logits[0, token] = 10.0
        return numbers.loss(logits, torch.tensor([target])).item()

    assert loss_when_peaked_at(target) < loss_when_peaked_at(near) < loss_when_peaked_at(far)
    other = tokenizer.convert_tokens_to_ids("</box>")  # not a number: plain cross-entropy
    logits = torch.randn(2, len(tokenizer))
    torch.testing.assert_close(numbers.loss(logits, torch.tensor([other, other])),
                               torch.nn.functional.cross_entropy(logits, torch.tensor([other, other])))


class DigitTokenizer:
    """A tokenizer that spells numbers digit by digit (as Janus-Pro's does)."""

    vocab = {str(d): d for d in range(10)} | {"<box>": 10}

    def __len__(self):
        return len(self.vocab)

    def get_vocab(self):
        return self.vocab

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens)


def test_box_number_targets_refuse_digit_splitting_tokenizers():
    from train.losses import BoxNumberTargets

    with pytest.raises(ValueError, match="whole-number"):
        BoxNumberTargets.from_tokenizer(DigitTokenizer(), sigma=10.0)


def test_scrambled_teacher_forcing_swaps_answer_numbers_only():
    from train.losses import number_vocab, scramble_box_numbers

    tokenizer = _shipped_tokenizer()
    special = SpecialTokens.from_tokenizer(tokenizer)
    values, spaced = number_vocab(tokenizer)
    # the phrase holds numbers too: only the answer's numbers may change
    queries = [(0, "12 red circles", (100, 200, 300, 400)), (0, "blue star", (5, 6, 7, 8)), (1, "circle", (1, 2, 3, 4))]
    batch = packed_grounding_inputs(tokenizer, special, queries, 4, "cpu")
    answer_numbers = (batch.labels != IGNORE) & (values[batch.input_ids] >= 0)
    assert int(answer_numbers.sum()) == 12

    same = scramble_box_numbers(batch, np.random.default_rng(0), values, spaced, 0.0)
    assert torch.equal(same.input_ids, batch.input_ids)
    noisy = scramble_box_numbers(batch, np.random.default_rng(0), values, spaced, 1.0)
    changed = noisy.input_ids != batch.input_ids
    assert changed.any() and not (changed & ~answer_numbers).any()
    assert torch.equal(noisy.labels, batch.labels)  # the targets stay the true box
    swapped = noisy.input_ids[answer_numbers]
    assert (values[swapped] >= 0).all()  # still numbers, spelled like the ones they replace
    assert torch.equal(spaced[swapped], spaced[batch.input_ids[answer_numbers]])
    half = scramble_box_numbers(batch, np.random.default_rng(1), values, spaced, 0.5)
    assert 0 < int((half.input_ids != batch.input_ids).sum()) < 12


def test_noisy_teacher_forcing_needs_whole_number_tokens():
    from train.config import ConfigError
    from train.losses import scrambler

    assert scrambler(DigitTokenizer(), 0.0, "pmtp.number_noise") is None  # off: nothing to check
    with pytest.raises(ConfigError, match="pmtp.number_noise: needs a tokenizer with whole-number tokens"):
        scrambler(DigitTokenizer(), 0.5, "pmtp.number_noise")
