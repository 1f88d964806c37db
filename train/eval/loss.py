"""Held-out teacher-forced losses (`python -m train.eval loss`): stage 1's own objective on records it never saw.

Drawing metrics sample hundreds of images and, over a few thousand stage-1 steps, move by less
than their seed-to-seed spread (AP50 about 0.006 on 500 layouts). The cross-entropy of a split's
own image tokens after its layout prompt samples nothing, so it tracks a long run from one
checkpoint to the next. It is split by where the tokens lie: in the cells a layout box overlaps
(the shapes that fidelity is scored on) or in the background. Grounding's is the plain
cross-entropy of the answer tokens `[x1, y1, x2, y2]</box>` of each record's objects.

No caption dropout, no noisy teacher forcing, no absent phrases: every row is the conditional
prompt and the true answer, so two models compare on the same tokens.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model import inputs
from model.compose import box_cells
from train.data import Record
from train.losses import IGNORE, grounding_loss, l2i_logits, supervised_batch
from train.vq_cache import encode_images


def object_cell_mask(records: Sequence[Record], grid: int) -> torch.Tensor:
    """[B, grid * grid] bool: the image-token cells that some layout box of the record overlaps."""
    mask = torch.zeros(len(records), grid * grid, dtype=torch.bool)
    for row, record in enumerate(records):
        layout = record.layout
        for obj in layout.objects:
            mask[row, sorted(box_cells(obj.box, layout.width, grid))] = True
    return mask


@torch.no_grad()
def evaluate_loss(model: Any, records: Sequence[Record], *, batch_size: int = 16, max_phrases: int = 6,
                  progress: bool = False) -> dict[str, Any]:
    """Mean per-token CE of L2I (all / object / background cells) and of grounding answers.

    `model` is an `EchoGen` on float32 weights; the grounding queries of a record with more than
    `max_phrases` objects are picked with a fixed seed per batch, so every model gets the same."""
    janus, processor = model.model, model.processor
    device, dtype = next(janus.parameters()).device, next(janus.parameters()).dtype
    num_features = janus.config.vision_config.num_image_tokens
    tokens = encode_images(janus, processor.image_processor, list(records), progress=progress)  # [N, T]
    grid = math.isqrt(tokens.shape[1])
    l2i_sum = {"all": 0.0, "objects": 0.0, "background": 0.0}
    l2i_count = {"all": 0, "objects": 0, "background": 0}
    ground_sum, ground_count = 0.0, 0
    for start in tqdm(range(0, len(records), batch_size), desc="loss", disable=not progress):
        chunk = list(records[start:start + batch_size])
        batch = supervised_batch(chunk, tokens[start:start + batch_size].long(), processor, model.special,
                                 np.random.default_rng(start), 0.0, max_phrases, num_features, device, dtype)
        logits = l2i_logits(janus, batch.l2i, batch.image_tokens)  # [B, T, V]
        per_token = F.cross_entropy(logits.float().flatten(0, 1), batch.image_tokens.flatten(),
                                    reduction="none").view_as(batch.image_tokens).cpu()  # [B, T]
        objects = object_cell_mask(chunk, grid)  # [B, T]
        for name, keep in (("all", torch.ones_like(objects)), ("objects", objects), ("background", ~objects)):
            l2i_sum[name] += float(per_token[keep].sum())
            l2i_count[name] += int(keep.sum())
        answers = int((batch.grounding.labels[:, 1:] != IGNORE).sum())
        if answers:
            features = inputs.image_features(janus, batch.pixels)  # [G, P, D]
            ground_sum += float(grounding_loss(janus, batch.grounding, features)) * answers
            ground_count += answers
    mean = {name: l2i_sum[name] / l2i_count[name] if l2i_count[name] else float("nan") for name in l2i_sum}
    return {
        "l2i_ce": mean["all"], "l2i_ce_objects": mean["objects"], "l2i_ce_background": mean["background"],
        "object_token_share": l2i_count["objects"] / max(1, l2i_count["all"]),
        "grounding_ce": ground_sum / ground_count if ground_count else float("nan"),
        "image_tokens": l2i_count["all"], "answer_tokens": ground_count,
    }
