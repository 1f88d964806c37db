"""Is a phrase in the image? Read off the first token of its grounding answer.

A grounding answer starts with `[` (a box follows) or with the first token of `none` (the phrase
names nothing in the image; models learn it from absent phrases, `pmtp.absent_share`). The
model's odds between those two tokens at the first answer step are its belief that the phrase
is there. `PresenceProbe` wraps the answer's constraint (`DecodeRequest.constrain`) and records
them while the box is decoded as usual, so presence costs nothing extra. A model never taught
`none` puts almost all of its mass on `[`: presence near 1, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from model.layout_text import NONE_ANSWER, box_answer

Constrain = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
PRESENT_THRESHOLD = 0.5  # presence below this: the model says the phrase names nothing in the image


def answer_start_tokens(tokenizer) -> tuple[int, int] | None:
    """(first token of a box answer, first token of `none`); None when the tokenizer cannot tell them apart."""
    box = tokenizer(box_answer((0, 0, 1000, 1000)), add_special_tokens=False).input_ids
    none = tokenizer(NONE_ANSWER, add_special_tokens=False).input_ids
    if not box or not none or box[0] == none[0]:
        return None
    return box[0], none[0]


@dataclass
class PresenceProbe:
    """A `DecodeRequest.constrain` that records, at answer step 0, P(box) / (P(box) + P(none)) of
    every decode row, then defers to `constrain` (the box grammar, or None)."""

    box_token: int
    none_token: int
    constrain: Constrain | None = None
    width: int = 1  # beam width: rows b*W .. b*W + W-1 are copies of prompt b at step 0
    present: torch.Tensor | None = None  # [B] after step 0

    def __call__(self, step: int, tokens: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if step == 0:
            pair = logits[::self.width, [self.box_token, self.none_token]].float()  # [B, 2]
            self.present = pair.softmax(-1)[:, 0].cpu()
        return logits if self.constrain is None else self.constrain(step, tokens, logits)

