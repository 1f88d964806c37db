"""Special tokens, looked up from the tokenizer at run time (ids differ between checkpoints).

Janus-Pro's tokenizer names its image tokens `image_token`, `boi_token`, `eoi_token`;
`JanusProcessor` reads the same attributes. The layout tokens (`<grounding>`, `<ref>`,
`<box>` and their closers) are added when a stock tokenizer lacks them, which grows the
vocabulary: `ensure_layout_tokens` then resizes the model's embeddings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from model.layout_text import BOX_CLOSE, BOX_OPEN, LAYOUT_SPECIAL_TOKENS, REF_CLOSE, REF_OPEN

logger = logging.getLogger(__name__)

USER_TAG, ASSISTANT_TAG = "<|User|>", "<|Assistant|>"


@dataclass(frozen=True)
class SpecialTokens:
    bos: int
    eos: int
    pad: int
    image: int  # placeholder filled with SigLIP features
    boi: int  # <begin_of_image>: the last prompt token before image tokens
    eoi: int
    ref_open: int
    ref_close: int
    box_open: int
    box_close: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialTokens:
        def token_id(token: str | None, name: str) -> int:
            if token is None:
                raise ValueError(f"the tokenizer defines no {name}")
            ids = tokenizer.convert_tokens_to_ids([token])
            if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
                raise ValueError(f"the tokenizer does not know its {name} {token!r}")
            return ids[0]

        pad = tokenizer.pad_token if tokenizer.pad_token is not None else tokenizer.eos_token
        return cls(
            bos=token_id(tokenizer.bos_token, "bos_token"),
            eos=token_id(tokenizer.eos_token, "eos_token"),
            pad=token_id(pad, "pad_token"),
            image=token_id(getattr(tokenizer, "image_token", None), "image_token"),
            boi=token_id(getattr(tokenizer, "boi_token", None), "boi_token"),
            eoi=token_id(getattr(tokenizer, "eoi_token", None), "eoi_token"),
            ref_open=token_id(REF_OPEN, "layout token"),
            ref_close=token_id(REF_CLOSE, "layout token"),
            box_open=token_id(BOX_OPEN, "layout token"),
            box_close=token_id(BOX_CLOSE, "layout token"),
        )


def ensure_layout_tokens(tokenizer, model=None) -> int:
    """Add missing layout tokens to the tokenizer (and resize `model`); returns how many were added."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in LAYOUT_SPECIAL_TOKENS if t not in vocab]
    if not missing:
        return 0
    added = tokenizer.add_tokens(missing, special_tokens=False)
    if model is not None:
        old = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > old:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            logger.info("added %d layout tokens; resized embeddings %d -> %d", added, old, len(tokenizer))
    return added
