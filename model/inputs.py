"""Prompt strings -> padded ids -> input embeddings (text embeddings, SigLIP features spliced in)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from model.tokens import SpecialTokens


@dataclass
class PromptBatch:
    input_ids: torch.Tensor  # [B, L] left-padded
    attention_mask: torch.Tensor  # [B, L] 1 = real token


def encode_prompts(tokenizer, prompts: list[str], device: torch.device | str = "cpu") -> PromptBatch:
    enc = tokenizer(prompts, padding=True, return_tensors="pt", padding_side="left")
    return PromptBatch(enc.input_ids.to(device), enc.attention_mask.to(device))


@dataclass
class SharedStart:
    ids: torch.Tensor  # [P] the start every prompt of a batch begins with
    rest: PromptBatch  # [B, L] what follows it in each prompt, left-padded


def split_shared_start(batch: PromptBatch, last_token: int, pad_token: int) -> SharedStart | None:
    """Left-padded prompts that all begin with the same ids, up to and including their one
    `last_token`, -> that start and the rest of each prompt; None when they do not.

    Grounding prompts all begin with the user tag and one image block (ending in
    `<end_of_image>`), so their long start can be run through the LM once per image."""
    ids, real = batch.input_ids, batch.attention_mask.bool()
    hits = (ids == last_token) & real
    if not bool((hits.sum(1) == 1).all()):
        return None
    firsts, ends = (~real).sum(1).tolist(), hits.int().argmax(1).tolist()  # first real token, `last_token`
    starts = [ids[row, first:end + 1] for row, (first, end) in enumerate(zip(firsts, ends))]
    if max(ends) == ids.shape[1] - 1 or any(not torch.equal(start, starts[0]) for start in starts):
        return None  # a prompt ends with the start (nothing left to decode from) or starts differ
    # Left padding puts every rest at the end of its row: the last columns, past each row's start.
    columns = torch.arange(min(ends) + 1, ids.shape[1], device=ids.device)  # [L] the longest rest
    rest_mask = columns.unsqueeze(0) > torch.tensor(ends, device=ids.device).unsqueeze(1)  # [B, L]
    rest_ids = torch.where(rest_mask, ids[:, columns], pad_token)
    return SharedStart(starts[0], PromptBatch(rest_ids, rest_mask.long()))


def unconditional_ids(batch: PromptBatch, special: SpecialTokens) -> torch.Tensor:
    """Janus' unconditional prompt: every token but BOS and BOI replaced by pad."""
    ids = batch.input_ids
    keep = (ids == special.bos) | (ids == special.boi)
    return torch.where(keep, ids, torch.full_like(ids, special.pad))


def cfg_batch(batch: PromptBatch, special: SpecialTokens) -> PromptBatch:
    """Rows [conditional; unconditional], as the CFG loop expects."""
    ids = torch.cat([batch.input_ids, unconditional_ids(batch, special)])
    return PromptBatch(ids, batch.attention_mask.repeat(2, 1))


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: [B, L]."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (RGBA, L, I;16, P, CMYK) -> RGB; transparency over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        return Image.fromarray((array / peak * 255).astype("uint8")).convert("RGB")
    return image.convert("RGB")


def pixel_values(image_processor, images: list[Image.Image], device, dtype) -> torch.Tensor:
    """[N, 3, S, S] SigLIP input (letterboxed to a square, normalized)."""
    out = image_processor([to_rgb(im) for im in images], return_tensors="pt")
    return out["pixel_values"].to(device=device, dtype=dtype)


def embed_prompts(
    model, input_ids: torch.Tensor, image_features: torch.Tensor | None = None,
    image_index: torch.Tensor | None = None, image_token_id: int | None = None,
) -> torch.Tensor:
    """Token embeddings [B, L, D]; image placeholders of row b take `image_features[image_index[b]]`.

    image_features: [N, P, D] aligned SigLIP features (P placeholders per image)."""
    embeds = model.get_input_embeddings()(input_ids)
    if image_features is None:
        return embeds
    rows = image_features[image_index].to(embeds.dtype)  # [B, P, D]
    mask = (input_ids == image_token_id).unsqueeze(-1)  # [B, L, 1]
    if int(mask.sum()) != rows.shape[0] * rows.shape[1]:
        raise ValueError("the number of image placeholders does not match the image features")
    return embeds.masked_scatter(mask, rows)


def image_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """SigLIP + aligner: [N, 3, S, S] -> [N, P, D]."""
    return model.model.get_image_features(pixels, return_dict=True).pooler_output
