"""A small byte-level BPE tokenizer for models we train from scratch (tests, EchoGen-Shapes).

It carries Janus' special tokens under Janus-Pro's names and the layout tokens, prepends BOS
like Janus-Pro's tokenizer, and learns whole-number tokens for the 0-1000 box coordinates
(with and without a leading space) so that a box costs a handful of tokens.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from model.layout_text import LAYOUT_SPECIAL_TOKENS
from model.tokens import ASSISTANT_TAG, USER_TAG

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
IMAGE, BOI, EOI = "<image_placeholder>", "<begin_of_image>", "<end_of_image>"
SPECIAL = [BOS, EOS, PAD, IMAGE, BOI, EOI]
# Chat tags and layout tokens are ordinary added tokens: they survive decoding, which the
# grounding parser needs (it reads `</box>`).
ADDED = [USER_TAG, ASSISTANT_TAG, *LAYOUT_SPECIAL_TOKENS]


def _number_corpus() -> list[str]:
    # Every coordinate as it appears in a box: "[7," and " 7," -> whole-number tokens.
    return [f"[{n}, {n}, {n}, {n}]" for n in range(1001)] * 4


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `corpus` plus box numbers and wrap it for transformers."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*corpus, *_number_corpus()], trainer=trainer)
    tok.add_tokens(ADDED)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        extra_special_tokens={"image_token": IMAGE, "boi_token": BOI, "eoi_token": EOI},
    )
