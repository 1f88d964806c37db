"""The one autoregressive loop (KV cache, CFG, sampling), and what training needs from it.

`decode` drives the language model token by token for both tasks: image tokens through the
generation head (L2I) and text through the LM head (grounding answers). Training reuses the
same pieces instead of a second loop:
- `image_logits` / `image_logprobs`: teacher-forced logits of given image tokens under a
  prompt, conditional or with CFG, in one parallel pass;
- `soft_image_embeddings` and `decode_soft_image`: probability-weighted image tokens as LM
  input embeddings and as pixels, so gradients flow through sampled images (DJO).

Sampling draws each row from its own `torch.Generator`, so candidate k of a layout is the same
image whatever else shares its batch. Grounding answers can instead be beam-searched
(`DecodeRequest.beams`): the answer with the highest total log-probability wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from model.fused_step import FusedLayers, signed_sin
from model.image_step import ImageEmbeddingTable, ImageHead
from model.inputs import position_ids
from model.kv_cache import preallocated_cache, reorder_hypotheses, share_prefix
from model.matmul import half_matmul_usable
from model.results import SamplingConfig

Head = Callable[[torch.Tensor], torch.Tensor]  # hidden [B, D] -> logits [B, V]
Embed = Callable[[torch.Tensor], torch.Tensor]  # tokens [B] -> embeddings [B, D]


@dataclass
class DecodeRequest:
    inputs_embeds: torch.Tensor  # [R, L, D]; with CFG, R = 2B rows [conditional; unconditional]
    attention_mask: torch.Tensor  # [R, L]
    num_tokens: int
    head: Head
    embed: Embed
    cfg: float = 1.0  # > 1: rows are [cond; uncond] and logits are guided
    stop_token: int | None = None  # text decoding: a row stops after writing it
    fill_token: int = 0  # written by rows that already stopped
    row_index: torch.Tensor | None = None  # [R] prompt row of each decode row (shared prefill)
    # (step, tokens so far [B, step], logits [B, V]) -> logits, before sampling (e.g. model.box_grammar)
    constrain: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    beams: int = 1  # > 1: beam search (greedy, no CFG): each prompt row keeps this many hypotheses
    # A start shared by many prompts, run through the LM once (grounding: one image, many phrases).
    # inputs_embeds / attention_mask then hold only what follows it; prompt row r continues start
    # row start_index[r].
    start_embeds: torch.Tensor | None = None  # [N, P, D], no padding
    start_index: torch.Tensor | None = None  # [R]
    # Decode steps of a plain small Llama multiply by weights packed in float16 (model.matmul;
    # float32 CPU models with fbgemm only, else ignored). The head is the caller's choice:
    # `image_head(model, half=True)`.
    half_weights: bool = False


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Mask logits [B, V] outside top-k and outside the top-p nucleus with -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def guide(logits: torch.Tensor, cfg: float) -> torch.Tensor:
    """[2B, V] rows [cond; uncond] -> [B, V] guided logits (Janus: uncond + cfg * (cond - uncond))."""
    cond, uncond = logits.chunk(2)
    return uncond + cfg * (cond - uncond)


def sample(
    logits: torch.Tensor, sampling: SamplingConfig, generators: list[torch.Generator] | None
) -> torch.Tensor:
    """Tokens [B] from guided logits [B, V]; one generator per row (inverse-CDF sampling)."""
    if sampling.temperature == 0 or generators is None:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / sampling.temperature, sampling.top_k, sampling.top_p)
    cdf = logits.softmax(-1).cumsum(-1)  # [B, V]
    u = torch.cat([torch.rand(1, generator=g, device=g.device) for g in generators]).to(cdf.device)
    u = u.unsqueeze(-1) * cdf[:, -1:]  # scale by the total mass (rounding)
    return torch.searchsorted(cdf, u).squeeze(-1).clamp(max=logits.shape[-1] - 1)


@torch.no_grad()
def decode(
    model, request: DecodeRequest, sampling: SamplingConfig = SamplingConfig(temperature=0.0),
    generators: list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Run the LM for `num_tokens` steps after a prompt; returns tokens [B, num_tokens].

    `model` is a JanusForConditionalGeneration (LoRA layers injected in place also work).
    With `request.row_index`, the prompt rows are prefilled once and fanned out to the
    decode rows (N candidates of one layout share one prefill); with `request.start_embeds`, a
    start common to many prompts is run once before them. With `request.beams` = W > 1,
    each decode row is searched as W hypotheses and its best one comes back."""
    width = beam_width(request, sampling)
    lm = model.model.language_model
    embeds = request.inputs_embeds
    fused = _fused_layers(lm, request.half_weights and half_matmul_usable(embeds.device, embeds.dtype))
    mask = request.attention_mask
    start = 0 if request.start_embeds is None else request.start_embeds.shape[1]
    cache = preallocated_cache(lm.config.num_hidden_layers, start + mask.shape[1] + request.num_tokens)
    if start:  # the shared start once per start row, then shared by its prompts (or copied to each)
        if request.start_index is None or request.start_index.shape[0] != mask.shape[0]:
            raise ValueError("start_embeds needs start_index: the start row of every prompt row")
        start_positions = torch.arange(start, device=mask.device).expand(request.start_embeds.shape[0], -1)
        lm(inputs_embeds=request.start_embeds, position_ids=start_positions, past_key_values=cache, use_cache=True)
        if fused is not None and fused.attends_shared_prefixes:
            share_prefix(cache, request.start_index)
        else:
            cache.batch_select_indices(request.start_index)
        mask = torch.cat([mask.new_ones(mask.shape[0], start), mask], dim=1)  # [R, P + L]
    positions = position_ids(mask)
    # Without padding the mask is all ones and attention needs none: skip building it.
    use_mask = not bool(mask.all())
    out = lm(
        inputs_embeds=request.inputs_embeds, attention_mask=mask if use_mask else None,
        position_ids=positions[:, start:], past_key_values=cache, use_cache=True,
    )
    hidden = out.last_hidden_state[:, -1]  # [R, D]
    row_index = request.row_index
    if width > 1:  # W copies of every decode row: hypotheses b*W .. b*W + W-1
        row_index = torch.arange(hidden.shape[0], device=hidden.device) if row_index is None else row_index
        row_index = row_index.repeat_interleave(width)
    if row_index is not None:
        cache.batch_select_indices(row_index)
        hidden, positions, mask = hidden[row_index], positions[row_index], mask[row_index]
    step = _DecodeStep(lm, positions[:, -1:] + 1, request.num_tokens, mask if use_mask else None, cache, fused)
    rows = hidden.shape[0] // 2 if request.cfg > 1 else hidden.shape[0]
    tokens = torch.full((rows, request.num_tokens), request.fill_token, dtype=torch.long, device=hidden.device)
    finished = torch.zeros(rows, dtype=torch.bool, device=hidden.device)
    beams = _Beams(rows // width, width, hidden.device) if width > 1 else None
    for t in range(request.num_tokens):
        logits = request.head(hidden)
        if request.cfg > 1:
            logits = guide(logits, request.cfg)
        if request.constrain is not None:
            logits = request.constrain(t, tokens[:, :t], logits)
        if beams is None:
            token = sample(logits, sampling, generators)
        else:  # hypotheses move to the rows of their best extensions (same prompt: same positions, mask)
            token, origin = beams.extend(logits, finished, request.fill_token)
            tokens, finished = tokens[origin], finished[origin]
            reorder_hypotheses(cache, origin, shared_prefix=mask.shape[1])  # hypotheses of a row share its prompt
        if request.stop_token is not None:
            token = token.masked_fill(finished, request.fill_token)
            finished |= token == request.stop_token
        tokens[:, t] = token
        if t + 1 == request.num_tokens or bool(finished.all()):
            break
        embeds = request.embed(token)  # [B, D]; conditional and unconditional rows share the token
        hidden = step(t, torch.cat([embeds, embeds]) if request.cfg > 1 else embeds)
    return tokens if beams is None else tokens[::beams.width]  # hypotheses stay sorted, best first


def beam_width(request: DecodeRequest, sampling: SamplingConfig) -> int:
    """The request's beam width (1: plain decoding); ValueError where beams cannot apply."""
    if request.beams < 1:
        raise ValueError(f"beams must be >= 1, got {request.beams}")
    if request.beams > 1 and (request.cfg > 1 or sampling.temperature != 0):
        raise ValueError("beam search decodes greedily without CFG (cfg 1, temperature 0)")
    return request.beams


class _Beams:
    """Beam-search scores: decode row b keeps `width` hypotheses in rows b*W .. b*W + W-1,
    ranked by total log-probability. A finished hypothesis only writes the fill token, at no
    cost, so it keeps its score while the others go on."""

    def __init__(self, rows: int, width: int, device: torch.device):
        self.width = width
        self.scores = torch.full((rows, width), float("-inf"), device=device)  # [B, W]
        self.scores[:, 0] = 0.0  # one live hypothesis per row at first
        self.first_row = torch.arange(rows, device=device).unsqueeze(1) * width  # [B, 1]

    def extend(self, logits: torch.Tensor, finished: torch.Tensor, fill_token: int) -> tuple[torch.Tensor, torch.Tensor]:
        """logits [B*W, V] -> (next token [B*W], row each new hypothesis extends [B*W])."""
        logprobs = logits.float().log_softmax(-1)
        if bool(finished.any()):
            logprobs[finished] = float("-inf")
            logprobs[finished, fill_token] = 0.0
        vocab = logprobs.shape[-1]
        total = (self.scores.view(-1, 1) + logprobs).view(self.scores.shape[0], -1)  # [B, W*V]
        self.scores, best = total.topk(self.width, dim=-1)  # [B, W], best first
        origin = (self.first_row + best // vocab).flatten()
        return (best % vocab).flatten(), origin


class _DecodeStep:
    """One token through the decoder layers, with rotary embeddings computed once for all steps.

    Runs the layers with fused projections (`FusedLayers`) when they are plain Llama, else calls
    the language model's own decoder layers and norm directly; either way the per-step work of
    `LlamaModel.forward` (mask building, rotary, output capture) is hoisted out of the loop.
    Falls back to the plain forward for language models of another shape."""

    def __init__(self, lm, first_position: torch.Tensor, num_tokens: int, mask: torch.Tensor | None, cache,
                 fused: FusedLayers | None):
        self.lm, self.cache, self.mask = lm, cache, mask
        self.positions = first_position + torch.arange(num_tokens, device=first_position.device)  # [R, T]
        self.fast = _steps_layer_by_layer(lm)
        if self.fast:
            dummy = torch.empty(0, dtype=next(lm.parameters()).dtype, device=first_position.device)
            self.cos, self.sin = lm.rotary_emb(dummy, position_ids=self.positions)  # [R, T, d] each
        self.fused = fused  # None unless the layers are fusable (`_fused_layers`)
        if self.fused is not None:
            self.sin_signed = signed_sin(self.sin)  # [R, T, d], once for all steps

    def __call__(self, t: int, embeds: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        position = self.positions[:, t:t + 1]
        if not self.fast:
            out = self.lm(inputs_embeds=embeds.unsqueeze(1), attention_mask=self.mask, position_ids=position,
                          past_key_values=self.cache, use_cache=True)
            return out.last_hidden_state[:, -1]
        attention_mask = None if self.mask is None else self.mask.bool()[:, None, None, :]  # [R, 1, 1, kv]
        hidden = embeds.unsqueeze(1)  # [R, 1, D]
        cos = self.cos[:, t:t + 1]
        if self.fused is not None:
            return self.lm.norm(self.fused(hidden, cos, self.sin_signed[:, t:t + 1], self.cache, attention_mask))[:, -1]
        rotary = (cos, self.sin[:, t:t + 1])
        for layer in self.lm.layers:
            hidden = layer(hidden, attention_mask=attention_mask, position_embeddings=rotary,
                           position_ids=position, past_key_values=self.cache, use_cache=True)
        return self.lm.norm(hidden)[:, -1]


def _fused_layers(lm, half: bool) -> FusedLayers | None:
    """The decode step's fused layers for `lm` (half: on float16-packed weights), None where
    `_DecodeStep` must call the layers' own forward."""
    return FusedLayers.for_lm(lm, half) if _steps_layer_by_layer(lm) else None


def _steps_layer_by_layer(lm) -> bool:
    """Whether `_DecodeStep` can run `lm`'s decoder layers and norm itself (a Llama-shaped LM)."""
    return all(hasattr(lm, name) for name in ("layers", "norm", "rotary_emb"))


def image_head(model, half: bool = False) -> Head:
    """Janus' generation head; half: on float16-packed weights where usable (`model.matmul`)."""
    return ImageHead.for_model(model, half and half_matmul_usable(model.device, model.dtype))


def image_embed(model) -> Embed:
    return ImageEmbeddingTable.for_model(model)


def text_head(model) -> Head:
    return model.lm_head


def text_embed(model) -> Embed:
    return model.get_input_embeddings()


def image_logits(
    model, prompt_embeds: torch.Tensor, prompt_mask: torch.Tensor, image_tokens: torch.Tensor,
    cfg: float = 1.0, image_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Teacher-forced logits [B, T, V] of `image_tokens` [B, T] after the prompt.

    With cfg > 1, prompt_* hold rows [cond; uncond] (2B) and the guided logits come back.
    `image_embeds` [B, T, D] replaces the embeddings of the image tokens (soft tokens)."""
    rows = prompt_embeds.shape[0]
    if image_embeds is None:
        image_embeds = model.prepare_embeddings_for_image_generation(image_tokens)  # [B, T, D]
    if rows != image_embeds.shape[0]:
        image_embeds = image_embeds.repeat(rows // image_embeds.shape[0], 1, 1)
    num_tokens = image_tokens.shape[1]
    embeds = torch.cat([prompt_embeds, image_embeds[:, :-1].to(prompt_embeds.dtype)], dim=1)
    mask = torch.cat([prompt_mask, prompt_mask.new_ones(rows, num_tokens - 1)], dim=1)
    hidden = model.model.language_model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids(mask), use_cache=False
    ).last_hidden_state
    logits = model.model.generation_head(hidden[:, -num_tokens:])  # [R, T, V]
    return guide(logits, cfg) if cfg > 1 else logits


def image_logprobs(logits: torch.Tensor, image_tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-token log-probs [B, T] of `image_tokens` under `logits / temperature` (no top-k/p)."""
    logp = F.log_softmax(logits.float() / max(temperature, 1e-6), dim=-1)
    return logp.gather(-1, image_tokens.unsqueeze(-1)).squeeze(-1)


def soft_image_embeddings(model, probs: torch.Tensor) -> torch.Tensor:
    """Probability-weighted image tokens [B, T, V] -> LM input embeddings [B, T, D]."""
    table = model.model.generation_embeddings.weight  # [V, C]
    return model.model.generation_aligner(probs.to(table.dtype) @ table)


def decode_soft_image(model, probs: torch.Tensor) -> torch.Tensor:
    """Probability-weighted image tokens [B, T, V] -> pixels [B, 3, H, W] in [-1, 1].

    Matches `vqmodel.decode` exactly for one-hot `probs` (codebook rows are L2-normalized
    before mixing, as `get_codebook_entry` normalizes them after lookup)."""
    vq = model.model.vqmodel
    codebook = F.normalize(vq.quantize.embedding.weight, p=2, dim=-1)  # [V, C]
    latents = probs.to(codebook.dtype) @ codebook  # [B, T, C]
    side = vq.quantize.quant_state_dims[0]
    latents = latents.view(probs.shape[0], side, side, -1).permute(0, 3, 1, 2)  # [B, C, h, w]
    return vq.decoder(vq.post_quant_conv(latents))


def decode_image_tokens(model, tokens: torch.Tensor) -> torch.Tensor:
    """Hard image tokens [B, T] -> pixels [B, 3, H, W] in [-1, 1]."""
    return model.model.vqmodel.decode(tokens)


def encode_image_tokens(model, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels [B, 3, H, W] (the processor's letterboxed, normalized images) -> image tokens [B, T]."""
    return model.model.vqmodel.encode(pixels).image_tokens.view(pixels.shape[0], -1)
