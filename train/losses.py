"""The supervised losses of stages 1 and 2, on model/'s prompts and teacher-forced passes.

- L2I: cross-entropy of the ground-truth image tokens after the L2I prompt (one parallel pass,
  `model.generation.image_logits` at cfg 1). A share of rows (caption dropout) gets Janus'
  unconditional prompt instead, so classifier-free guidance works at inference.
- Grounding: cross-entropy on the answer tokens only (`[x1, y1, x2, y2]</box>` + EOS) after the
  forced prefix `... <ref>phrase</ref><box>`; the image enters as SigLIP features. A phrase
  that names nothing in the image (an absent query) is answered `none</box>` + EOS.

Both tasks read and write the same `<ref>phrase</ref><box>[x1, y1, x2, y2]</box>` span: a
layout's serialization is the L2I condition and, one object at a time, the grounding target.

All functions take the Janus model itself (`model.loading.unwrap_peft` of a PeftModel: the
LoRA layers sit in place inside it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from model import generation, inputs
from model.box_grammar import number_vocab
from model.layout import Layout
from model.layout_text import normalize_box
from model.prompts import grounding_prompt, grounding_target, image_block, l2i_prompt
from model.tokens import SpecialTokens
from train.data import Record, load_pixels, pick_queries

IGNORE = -100
AbsentPhrases = Callable[[Layout, np.random.Generator], "str | None"]  # e.g. train.shapes.absent.absent_phrase


@dataclass
class GroundingInputs:
    """Teacher-forcing rows of grounding queries: one query per row (`grounding_inputs`), or all
    queries of one image packed into one row behind a single copy of the image (`packed_grounding_inputs`)."""

    input_ids: torch.Tensor  # [S, L] prompt(s) + answer(s)
    attention_mask: torch.Tensor  # [S, L] 1 = real token (left-padded), or [S, 1, L, L] additive (packed)
    labels: torch.Tensor  # [S, L] answer tokens, IGNORE elsewhere
    image_index: torch.Tensor  # [S] which image of the batch each row looks at
    image_token_id: int  # the placeholder that SigLIP features replace
    position_ids: torch.Tensor | None = None  # [S, L]; None: from the 2D attention mask


@dataclass
class SupervisedBatch:
    """One micro-batch of stages 1-2: B records, their tokens and Q grounding queries."""

    l2i: inputs.PromptBatch  # [B, L] L2I prompts, caption-dropped rows unconditional
    conditional: torch.Tensor  # [B] bool: rows that kept their layout prompt
    image_tokens: torch.Tensor  # [B, T] ground-truth VQ tokens
    pixels: torch.Tensor  # [G, 3, S, S] ground-truth images of the G grounded records (SigLIP input)
    grounding: GroundingInputs


def l2i_inputs(tokenizer, special: SpecialTokens, layouts: list[Layout], drop: list[bool], device) -> inputs.PromptBatch:
    """L2I prompts [B, L]; rows with drop[b] become Janus' unconditional prompt (BOS, pads, BOI)."""
    batch = inputs.encode_prompts(tokenizer, [l2i_prompt(lay, tokenizer.boi_token) for lay in layouts], device)
    dropped = torch.tensor(drop, device=device).unsqueeze(1)  # [B, 1]
    ids = torch.where(dropped, inputs.unconditional_ids(batch, special), batch.input_ids)
    return inputs.PromptBatch(ids, batch.attention_mask)


def _query_tokens(tokenizer, queries: list[tuple[int, str, tuple]], num_image_tokens: int):
    """(image index, prompt ids, answer ids) per query, as both row layouts below use them."""
    block = image_block(tokenizer.boi_token, tokenizer.image_token, tokenizer.eoi_token, num_image_tokens)
    for index, phrase, box in queries:
        prompt = tokenizer(grounding_prompt(phrase, block)).input_ids  # BOS added like at inference
        answer = tokenizer(grounding_target(box, tokenizer.eos_token), add_special_tokens=False).input_ids
        yield index, prompt, answer


def grounding_inputs(tokenizer, special: SpecialTokens, queries: list[tuple[int, str, tuple]],
                     num_image_tokens: int, device) -> GroundingInputs:
    """queries: (image index, phrase, 0-1000 box) -> teacher-forcing inputs with answer labels."""
    rows, labels = [], []
    for _, prompt, answer in _query_tokens(tokenizer, queries, num_image_tokens):
        rows.append(prompt + answer)
        labels.append([IGNORE] * len(prompt) + answer)
    width = max(map(len, rows))
    pad = [width - len(r) for r in rows]
    ids = torch.tensor([[special.pad] * p + r for p, r in zip(pad, rows)], device=device)
    mask = torch.tensor([[0] * p + [1] * len(r) for p, r in zip(pad, rows)], device=device)
    target = torch.tensor([[IGNORE] * p + lab for p, lab in zip(pad, labels)], device=device)
    index = torch.tensor([i for i, _, _ in queries], device=device)
    return GroundingInputs(ids, mask, target, index, special.image)


def packed_grounding_inputs(tokenizer, special: SpecialTokens, queries: list[tuple[int, str, tuple]],
                            num_image_tokens: int, device) -> GroundingInputs:
    """The queries of each image in one row: their shared prompt start (BOS, the image, the
    question's opening) once, then each query's rest and answer, which sees that start and
    itself only. Positions restart after the shared start, so every query reads exactly what
    `grounding_inputs` gives it and the loss is the same; the image is run through the LM once
    per image instead of once per query (most of a grounding row is the image)."""
    by_image: dict[int, list[tuple[list[int], list[int]]]] = {}
    for index, prompt, answer in _query_tokens(tokenizer, queries, num_image_tokens):
        by_image.setdefault(index, []).append((prompt, answer))
    rows = [_pack_queries(pairs) for pairs in by_image.values()]  # (ids, labels, positions, segments)
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), special.pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.full((len(rows), width), -2, dtype=torch.long)  # -1 shared start, j query j, -2 padding
    for row, (row_ids, row_labels, row_positions, row_segments) in enumerate(rows):
        n = len(row_ids)
        ids[row, :n], labels[row, :n] = torch.tensor(row_ids), torch.tensor(row_labels)
        positions[row, :n], segment[row, :n] = torch.tensor(row_positions), torch.tensor(row_segments)
    causal = torch.ones(width, width, dtype=torch.bool).tril()  # [L, L] query i sees key j <= i
    seg_q, seg_k = segment.unsqueeze(2), segment.unsqueeze(1)  # [S, L, 1], [S, 1, L]
    visible = causal & (((seg_k == -1) & (seg_q != -2)) | ((seg_q == seg_k) & (seg_q >= 0)))
    visible |= torch.eye(width, dtype=torch.bool)  # padding sees itself: no row without a key
    mask = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min).unsqueeze(1)
    index = torch.tensor(list(by_image), device=device)
    return GroundingInputs(ids.to(device), mask.to(device), labels.to(device), index, special.image,
                           positions.to(device))


def _pack_queries(pairs: list[tuple[list[int], list[int]]]):
    """(prompt, answer) token lists of one image -> one row's ids, labels, positions, segments."""
    shared = min(len(prompt) for prompt, _ in pairs) - 1  # every query keeps >= 1 prompt token of its own
    first = pairs[0][0]
    for prompt, _ in pairs[1:]:
        shared = next((i for i in range(shared) if prompt[i] != first[i]), shared)
    ids, labels, positions, segments = list(first[:shared]), [IGNORE] * shared, list(range(shared)), [-1] * shared
    for j, (prompt, answer) in enumerate(pairs):
        rest = prompt[shared:] + answer
        ids += rest
        labels += [IGNORE] * (len(prompt) - shared) + answer
        positions += range(shared, shared + len(rest))
        segments += [j] * len(rest)
    return ids, labels, positions, segments


def grounded_records(count: int, share: float, rng: np.random.Generator) -> list[int]:
    """Indices (ascending) of the `round(share * count)` records, at least one, that get grounding
    queries; every record at share 1 (without drawing from `rng`, so such runs keep their data)."""
    if share >= 1.0:
        return list(range(count))
    keep = max(1, round(share * count))
    return sorted(int(i) for i in rng.choice(count, keep, replace=False))


def supervised_batch(records: list[Record], tokens: torch.Tensor, processor, special: SpecialTokens,
                     rng: np.random.Generator, caption_dropout: float, max_phrases: int,
                     num_features: int, device, dtype, grounding_share: float = 1.0,
                     absent: AbsentPhrases | None = None, absent_share: float = 0.0) -> SupervisedBatch:
    """All B records train L2I; `grounding_share` of them (at least one, picked by `rng`) are also
    asked for their objects. `pixels` and the queries' image indices cover only those records.
    With `absent`, each grounded record is also asked, with probability `absent_share`, for one
    phrase `absent` says it lacks (answer `none`)."""
    tokenizer = processor.tokenizer
    drop = [bool(d) for d in rng.random(len(records)) < caption_dropout]
    grounded = grounded_records(len(records), grounding_share, rng)
    queries = []
    for b, i in enumerate(grounded):
        side = records[i].layout.width
        queries += [(b, q.phrase, normalize_box(q.box, side, side)) for q in pick_queries(records[i], max_phrases, rng)]
        if absent is not None and rng.random() < absent_share:  # no draw without `absent`: old runs keep their data
            phrase = absent(records[i].layout, rng)
            if phrase is not None:
                queries.append((b, phrase, None))
    return SupervisedBatch(
        l2i=l2i_inputs(tokenizer, special, [r.layout for r in records], drop, device),
        conditional=~torch.tensor(drop, device=device),
        image_tokens=tokens.to(device),
        pixels=load_pixels(processor.image_processor, [records[i].image for i in grounded], device, dtype),
        grounding=packed_grounding_inputs(tokenizer, special, queries, num_features, device),
    )


def l2i_logits(model, prompt: inputs.PromptBatch, image_tokens: torch.Tensor) -> torch.Tensor:
    """Teacher-forced image-token logits [B, T, V] after the prompts (no guidance)."""
    embeds = inputs.embed_prompts(model, prompt.input_ids)  # [B, L, D]
    return generation.image_logits(model, embeds, prompt.attention_mask, image_tokens, cfg=1.0)


def token_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean CE of tokens [B, T] under logits [B, T, V]."""
    return F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())


def number_vocab_for(tokenizer, option_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`number_vocab`, or a ConfigError naming the option that needs it."""
    from train.config import ConfigError

    try:
        return number_vocab(tokenizer)
    except ValueError as error:
        raise ConfigError(f"{option_name}: {error}") from None


def scramble_box_numbers(batch: GroundingInputs, rng: np.random.Generator, values: torch.Tensor,
                         spaced: torch.Tensor, share: float) -> GroundingInputs:
    """Teacher forcing with noise: each box number an answer feeds back as input is swapped, with
    probability `share`, for a random number token of the same spelling; the labels stay.

    With clean teacher forcing a small model can read y1, x2, y2 off the true earlier numbers (the
    object whose left edge is x1) and never learns to find the phrase's object, which it must do
    for x1 at inference: the built-in model wrote the left edge of all objects for x1 and the rest
    right only given the true x1. Noisy inputs make every coordinate come from the phrase and
    the image. Not in the paper. values, spaced: `number_vocab`."""
    if share <= 0:
        return batch
    ids = batch.input_ids.cpu().clone()  # [S, L]
    is_number = (batch.labels.cpu() != IGNORE) & (values[ids] >= 0)
    swap = is_number & torch.from_numpy(rng.random(ids.shape) < share)
    for flag in (False, True):  # unspaced x1, spaced y1 / x2 / y2
        where = swap & (spaced[ids] == flag)
        kind = torch.nonzero((values >= 0) & (spaced == flag)).flatten()  # the number tokens of this spelling
        ids[where] = kind[torch.from_numpy(rng.integers(0, len(kind), int(where.sum())))]
    return dataclasses.replace(batch, input_ids=ids.to(batch.input_ids.device))


def scrambler(tokenizer, share: float, option_name: str):
    """`scramble_box_numbers` bound to this tokenizer's numbers and `share` (None for share 0)."""
    if share <= 0:
        return None
    values, spaced = number_vocab_for(tokenizer, option_name)
    return functools.partial(scramble_box_numbers, values=values, spaced=spaced, share=share)


@dataclass
class BoxNumberTargets:
    """Soft targets for box coordinates written as whole-number tokens ("123", " 456").

    Plain CE gives a coordinate one token off the same loss as one 500 off. Here the target of
    a number token is a Gaussian (std `sigma`, in 0-1000 units) over the number tokens of the
    same spelling (with or without a leading space), so near misses are rewarded and a small
    model learns boxes much sooner. Only for tokenizers with whole-number tokens (ours; not
    Janus-Pro's, which splits digits): `from_tokenizer` refuses others. Not in the paper."""

    values: torch.Tensor  # [V] the number a token spells, -1 for other tokens
    spaced: torch.Tensor  # [V] bool: the token starts with a space
    sigma: float

    @classmethod
    def from_tokenizer(cls, tokenizer, sigma: float) -> "BoxNumberTargets":
        return cls(*number_vocab(tokenizer), sigma)

    @classmethod
    def from_config(cls, tokenizer, sigma: float, option_name: str) -> "BoxNumberTargets | None":
        """None for sigma 0 (plain CE); ConfigError naming `option_name` for an unsuitable tokenizer."""
        if sigma <= 0:
            return None
        return cls(*number_vocab_for(tokenizer, option_name), sigma)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean soft-target CE of targets [K] under logits [K, V]; non-number targets stay one-hot."""
        values, spaced = self.values.to(targets.device), self.spaced.to(targets.device)
        target_values = values[targets]  # [K]
        distance = (values.unsqueeze(0) - target_values.unsqueeze(1)).float()  # [K, V]
        same_kind = (values >= 0).unsqueeze(0) & (spaced.unsqueeze(0) == spaced[targets].unsqueeze(1))
        soft = torch.where(same_kind, -0.5 * (distance / self.sigma) ** 2, float("-inf")).softmax(-1)
        one_hot = F.one_hot(targets, logits.shape[-1]).float()
        weights = torch.where((target_values >= 0).unsqueeze(1), soft, one_hot)  # [K, V]
        return -(weights * logits.float().log_softmax(-1)).sum(-1).mean()


def grounding_loss(model, batch: GroundingInputs, features: torch.Tensor,
                   numbers: BoxNumberTargets | None = None) -> torch.Tensor:
    """Mean CE over all answer tokens; features [N, P, D] are the images the queries index.

    With `numbers`, coordinate tokens get soft targets (see BoxNumberTargets)."""
    embeds = inputs.embed_prompts(model, batch.input_ids, features, batch.image_index,
                                  batch.image_token_id)  # [S, L, D]
    positions = inputs.position_ids(batch.attention_mask) if batch.position_ids is None else batch.position_ids
    mask = batch.attention_mask if batch.attention_mask.dim() == 2 else batch.attention_mask.to(embeds.dtype)
    hidden = model.model.language_model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False,
    ).last_hidden_state  # [S, L, D]
    targets = batch.labels[:, 1:]  # token t+1 is predicted at position t
    keep = targets != IGNORE
    logits = model.lm_head(hidden[:, :-1][keep])  # [K, V]: only answer positions reach the LM head
    if numbers is not None:
        return numbers.loss(logits, targets[keep])
    return F.cross_entropy(logits.float(), targets[keep])


def to_siglip(pixels: torch.Tensor, image_processor, size: int) -> torch.Tensor:
    """VQ decoder output [B, 3, H, W] in [-1, 1] -> SigLIP input (processor normalization, size)."""
    mean = torch.tensor(image_processor.image_mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    out = ((pixels + 1) / 2 - mean) / std  # the identity for Janus' mean = std = 0.5
    if out.shape[-1] != size:
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
    return out


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Gumbel-Softmax over the last dim with an explicit generator ([B, T, V] -> [B, T, V]).

    hard=True returns one-hot samples whose gradient is the soft sample's (straight-through);
    the hard sample is a draw from softmax(logits) whatever tau is."""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    gumbels = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float32).tiny)))  # u in (0, 1)
    soft = ((logits.float() + gumbels) / tau).softmax(-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft


def straight_through(logits: torch.Tensor, tokens: torch.Tensor, tau: float) -> torch.Tensor:
    """One-hot of already sampled tokens [B, T] carrying the gradient of softmax(logits / tau)."""
    soft = (logits.float() / tau).softmax(-1)
    return F.one_hot(tokens, soft.shape[-1]).to(soft.dtype) - soft.detach() + soft


def through_frozen(loss_of, x: torch.Tensor) -> torch.Tensor:
    """loss_of(x) whose gradient reaches what made x but none of loss_of's own parameters.

    The grad of the loss w.r.t. x is taken at once (autograd.grad, nothing accumulates in any
    .grad), and a surrogate <x, grad> with the loss's value carries it back into x's graph.
    DJO uses it so the grounding loss on generated images trains only the generator: otherwise
    the shared weights also learn to ground wrong images onto their layout's boxes."""
    if not x.requires_grad:
        return loss_of(x)
    leaf = x.detach().requires_grad_()
    loss = loss_of(leaf)
    if not loss.requires_grad:
        return loss
    (grad,) = torch.autograd.grad(loss, leaf)
    surrogate = (x * grad).sum()
    return surrogate + (loss.detach() - surrogate.detach())


def annealed_tau(step: int, tau0: float, tau_min: float, rate: float) -> float:
    """tau = max(tau_min, tau0 * exp(-rate * step))."""
    return max(tau_min, tau0 * math.exp(-rate * step))


def supervised_losses(model, batch: SupervisedBatch, l2i_weight: float, grounding_weight: float,
                      numbers: BoxNumberTargets | None = None, need_logits: bool = True):
    """Stage 1's loss on one batch: (weighted sum, {l2i_loss, grounding_loss}, L2I logits [B, T, V]).

    A task weighted 0 is not run (its loss is not logged), unless `need_logits` asks for the L2I logits."""
    stats, loss, logits = {}, 0.0, None
    if l2i_weight > 0 or need_logits:
        logits = l2i_logits(model, batch.l2i, batch.image_tokens)
        l2i = token_cross_entropy(logits, batch.image_tokens)
        loss, stats["l2i_loss"] = l2i_weight * l2i, l2i.detach()
    if grounding_weight > 0:
        features = inputs.image_features(model, batch.pixels)  # [G, P, D]
        ground = grounding_loss(model, batch.grounding, features, numbers)
        loss, stats["grounding_loss"] = loss + grounding_weight * ground, ground.detach()
    return loss, stats, logits
