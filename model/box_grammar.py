"""Constrained decoding of grounding answers: `[x1, y1, x2, y2]</box>` with x1 < x2 and y1 < y2.

When the tokenizer writes every number 0-1000 as one token (the built-in model's does), an
answer after the forced `<ref>phrase</ref><box>` is exactly ten tokens:

    [   x1   ,   ␣y1   ,   ␣x2   ,   ␣y2   ]   </box>

At each step only the tokens this grammar allows keep their logits, and x2 / y2 must exceed
the x1 / y1 already written, so every answer parses into a box of positive area; the model
still picks every number. Tokenizers that split digits (Janus-Pro's) get no grammar
(`BoxGrammar.from_tokenizer` returns None) and their answers are decoded freely and parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.layout_text import BOX_CLOSE

X1, Y1, X2, Y2 = 1, 3, 5, 7  # answer steps that write the coordinates
STEPS = 10


def number_vocab(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [V]: the number 0-1000 a token spells as we write numbers, without leading zeros; -1
    for other tokens; spaced [V]: it starts with a space). ValueError for tokenizers without
    whole-number tokens."""
    values = torch.full((len(tokenizer),), -1, dtype=torch.long)
    spaced = torch.zeros(len(tokenizer), dtype=torch.bool)
    for token, index in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token])
        digits = text.lstrip(" ")
        canonical = digits.isascii() and digits.isdigit() and digits == str(int(digits))  # not "05"
        if canonical and int(digits) <= 1000 and len(text) - len(digits) <= 1:
            values[index], spaced[index] = int(digits), text != digits
    if int((values > 9).sum()) < 20:
        raise ValueError("needs a tokenizer with whole-number tokens (this one splits digits)")
    return values, spaced


@dataclass
class BoxGrammar:
    allowed: torch.Tensor  # [STEPS, V] bool: the tokens each answer step may write
    values: torch.Tensor  # [V] number of each token, -1 for non-numbers

    @classmethod
    def from_tokenizer(cls, tokenizer) -> BoxGrammar | None:
        """The grammar of this tokenizer's answers, or None when it cannot write one."""
        try:
            values, spaced = number_vocab(tokenizer)
        except ValueError:
            return None
        marks = [tokenizer(mark, add_special_tokens=False).input_ids for mark in ("[", ",", "]")]
        close = tokenizer.convert_tokens_to_ids([BOX_CLOSE])[0]
        if any(len(ids) != 1 for ids in marks) or close is None or close == tokenizer.unk_token_id:
            return None
        (open_, comma, end) = (ids[0] for ids in marks)
        unspaced, spaced_numbers = (values >= 0) & ~spaced, (values >= 0) & spaced
        allowed = torch.zeros(STEPS, len(values), dtype=torch.bool)
        for step, token in ((0, open_), (2, comma), (4, comma), (6, comma), (8, end), (9, close)):
            allowed[step, token] = True
        allowed[X1], allowed[Y1], allowed[X2], allowed[Y2] = unspaced, spaced_numbers, spaced_numbers, spaced_numbers
        if not all(allowed[step].any() for step in range(STEPS)):
            return None
        # the grammar must be how the tokenizer itself writes an answer, one token per number
        sample = tokenizer("[123, 456, 789, 1000]" + BOX_CLOSE, add_special_tokens=False).input_ids
        if len(sample) != STEPS or not all(allowed[step, token] for step, token in enumerate(sample)):
            return None
        return cls(allowed, values)

    def __call__(self, step: int, tokens: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] of answer step `step` with disallowed tokens at -inf; tokens [B, step] so far."""
        if step >= STEPS:
            return logits
        values = self.values.to(logits.device)
        allow = self.allowed[step].to(logits.device).expand_as(logits)  # [B, V]
        if step in (X2, Y2):
            lower = values[tokens[:, step - 4]]  # [B] the x1 / y1 written
            above = allow & (values.unsqueeze(0) > lower.unsqueeze(1))
            allow = torch.where(above.any(-1, keepdim=True), above, allow)  # x1 = 1000: nothing is above
        return logits.masked_fill(~allow, float("-inf"))
