"""Beam search in the one decode loop: exact when wide enough, per row, and refused where it cannot apply."""

import itertools

import pytest
import torch

from model import generation, inputs
from model.results import SamplingConfig

ALLOWED = [5, 17, 40, 77]  # text tokens the test decoder may write


def only_allowed(step, tokens, logits):
    keep = torch.full_like(logits, float("-inf"))
    keep[..., ALLOWED] = 0.0
    return logits + keep


def request(eg, texts, num_tokens=3, beams=1, constrain=only_allowed, **kw):
    batch = inputs.encode_prompts(eg.tokenizer, texts, eg.device)
    embeds = generation.text_embed(eg.model)(batch.input_ids)  # [B, L, D]
    return generation.DecodeRequest(
        inputs_embeds=embeds, attention_mask=batch.attention_mask, num_tokens=num_tokens,
        head=generation.text_head(eg.model), embed=generation.text_embed(eg.model),
        constrain=constrain, beams=beams, **kw)


def trap(first_token):
    """A constraint under which greedy decoding is not optimal: after `first_token` the next
    tokens are uniform over ALLOWED (log 1/4 each), after any other first token one is certain."""
    def constrain(step, tokens, logits):
        logits = only_allowed(step, tokens, logits)
        if step == 0:
            return logits
        flat = torch.where(torch.isfinite(logits), 0.0, float("-inf"))
        peaked = logits.clone()
        peaked[..., ALLOWED[step]] += 30.0
        return torch.where((tokens[:, 0] == first_token).unsqueeze(1), flat, peaked)
    return constrain


def sequence_logprob(eg, text, sequence, constrain):
    """log p(sequence | text) under `constrain`, from one teacher-forced pass."""
    batch = inputs.encode_prompts(eg.tokenizer, [text], eg.device)
    ids = torch.cat([batch.input_ids, torch.tensor([sequence[:-1]])], dim=1)
    hidden = eg.model.model.language_model(inputs_embeds=generation.text_embed(eg.model)(ids)).last_hidden_state
    logits = eg.model.lm_head(hidden[0, -len(sequence):])  # [T, V]
    return sum(float(constrain(t, torch.tensor([sequence[:t]]), logits[t:t + 1]).log_softmax(-1)[0, token])
               for t, token in enumerate(sequence))


@torch.no_grad()
def test_wide_enough_beam_finds_the_most_likely_sequence(spread_echogen):
    eg, text = spread_echogen, "a red circle on the left"
    first = int(generation.decode(eg.model, request(eg, [text], num_tokens=1))[0, 0])
    constrain = trap(first)
    scores = {seq: sequence_logprob(eg, text, list(seq), constrain) for seq in itertools.product(ALLOWED, repeat=3)}
    best = max(scores, key=scores.get)
    greedy = tuple(generation.decode(eg.model, request(eg, [text], constrain=constrain))[0].tolist())
    assert greedy[0] == first and greedy != best, "degenerate test: greedy already finds the best sequence"
    # 16 hypotheses keep every 2-token prefix of 4 tokens, so the search is exhaustive
    searched = tuple(generation.decode(eg.model, request(eg, [text], beams=16, constrain=constrain))[0].tolist())
    assert searched == best
    narrow = tuple(generation.decode(eg.model, request(eg, [text], beams=2, constrain=constrain))[0].tolist())
    assert scores[narrow] >= scores[greedy]


@torch.no_grad()
def test_exhaustive_beams_score_hypotheses_by_their_own_history(spread_echogen):
    """With the model's own logits (no trap), the search must keep each hypothesis' keys and
    values with it as hypotheses move between rows: 16 beams over 4 tokens x 3 steps must find
    the sequence that teacher forcing scores best, for every prompt."""
    eg = spread_echogen
    for text in ["yellow", "a red circle on the left", "blue square"]:  # "yellow" fails if they do not
        scores = {seq: sequence_logprob(eg, text, list(seq), only_allowed)
                  for seq in itertools.product(ALLOWED, repeat=3)}
        searched = tuple(generation.decode(eg.model, request(eg, [text], beams=16))[0].tolist())
        assert searched == max(scores, key=scores.get), text


@torch.no_grad()
def test_beams_of_a_padded_batch_equal_rows_run_alone(spread_echogen):
    eg = spread_echogen
    texts = ["blue square", "a small green star behind the red circle"]
    together = generation.decode(eg.model, request(eg, texts, num_tokens=4, beams=3))
    assert together.shape == (2, 4)
    for row, text in enumerate(texts):
        assert torch.equal(together[row], generation.decode(eg.model, request(eg, [text], num_tokens=4, beams=3))[0])


@torch.no_grad()
def test_finished_hypotheses_write_fill_tokens(spread_echogen):
    eg, stop, fill = spread_echogen, ALLOWED[0], 0
    out = generation.decode(eg.model, request(eg, ["red circle", "blue square"], num_tokens=6, beams=4,
                                              stop_token=stop, fill_token=fill))
    for row in out.tolist():
        if stop in row:
            assert all(t == fill for t in row[row.index(stop) + 1:])
        else:
            assert fill not in row


def test_beam_search_is_refused_with_cfg_sampling_or_no_beams(tiny_echogen):
    eg = tiny_echogen
    with pytest.raises(ValueError, match="greedily"):
        generation.decode(eg.model, request(eg, ["x"], beams=2), SamplingConfig(cfg=1.0, temperature=1.0))
    with pytest.raises(ValueError, match="greedily"):
        generation.decode(eg.model, request(eg, ["x"], beams=2, cfg=2.0))
    with pytest.raises(ValueError, match=">= 1"):
        generation.decode(eg.model, request(eg, ["x"], beams=0))
    with pytest.raises(ValueError, match="grounding_beams"):
        type(eg)(eg.model, eg.processor, grounding_beams=0)


def test_beam_searched_groundings_still_follow_the_box_grammar(tiny_janus_dir):
    from PIL import Image

    from model.echogen import EchoGen
    from model.layout_text import parse_box

    phrases = [["red circle", "blue square", "star"]]
    found = EchoGen.load(tiny_janus_dir, grounding_beams=4).ground([Image.new("RGB", (32, 32), "red")], phrases)[0]
    assert len(found) == 3
    for g in found:
        x1, y1, x2, y2 = parse_box(g.text).box
        assert g.valid and x1 < x2 and y1 < y2
