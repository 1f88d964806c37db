"""The grounding answer grammar: ten tokens, x1 < x2 and y1 < y2, or no grammar at all."""

import torch
from PIL import Image
from transformers import AutoTokenizer

from model.box_grammar import STEPS, X1, X2, Y1, Y2, BoxGrammar
from model.echogen import EchoGen
from model.layout_text import parse_box


def shipped_tokenizer():
    return AutoTokenizer.from_pretrained("assets/echogen-shapes")


def test_each_step_allows_exactly_the_grammars_tokens():
    tokenizer = shipped_tokenizer()
    grammar = BoxGrammar.from_tokenizer(tokenizer)
    allowed = [tokenizer.convert_ids_to_tokens(grammar.allowed[step].nonzero().flatten().tolist())
               for step in range(STEPS)]
    assert allowed[0] == ["["] and allowed[2] == allowed[4] == allowed[6] == [","]
    assert allowed[8] == ["]"] and allowed[9] == ["</box>"]
    assert len(allowed[X1]) == 1001 and all(not t.startswith("Ġ") for t in allowed[X1])
    for step in (Y1, X2, Y2):
        assert len(allowed[step]) == 1001 and all(t.startswith("Ġ") for t in allowed[step])


def test_second_corner_must_pass_the_first():
    tokenizer = shipped_tokenizer()
    grammar = BoxGrammar.from_tokenizer(tokenizer)
    written = torch.tensor([tokenizer("[700, 20,", add_special_tokens=False).input_ids,
                            tokenizer("[1000, 20,", add_special_tokens=False).input_ids])  # [2, 5]
    logits = grammar(X2, written, torch.zeros(2, len(tokenizer)))
    values = grammar.values[torch.isfinite(logits[0]).nonzero().flatten()]
    assert values.min() == 701 and values.max() == 1000
    # x1 = 1000 leaves nothing above it: the row falls back to every number rather than none
    assert torch.isfinite(logits[1]).sum() == 1001
    assert torch.isfinite(grammar(STEPS, written, torch.zeros(2, len(tokenizer)))).all()  # past the answer


def test_digit_splitting_tokenizers_get_no_grammar():
    from tests.test_train_losses import DigitTokenizer

    assert BoxGrammar.from_tokenizer(DigitTokenizer()) is None


def test_random_model_answers_always_parse_with_the_grammar_and_not_without(tiny_janus_dir):
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    phrases = [["red circle", "blue square", "star", "green triangle"]]
    free = EchoGen.load(tiny_janus_dir, constrain_boxes=False).ground([image], phrases)[0]
    ruled = EchoGen.load(tiny_janus_dir).ground([image], phrases)[0]
    assert not all(g.valid for g in free)  # control: a random model writes no grammar by itself
    for g in ruled:
        parsed = parse_box(g.text)
        assert g.valid and parsed.box is not None
        x1, y1, x2, y2 = parsed.box
        assert x1 < x2 and y1 < y2


def test_no_grammar_when_the_tokenizer_does_not_write_numbers_as_single_tokens():
    """Number tokens in the vocabulary are not enough: its encoding must use them."""
    tokenizer = shipped_tokenizer()

    class DigitWriter:  # the same vocabulary, but encodes "123" digit by digit
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __len__(self):
            return len(tokenizer)

        def __call__(self, text, **kwargs):
            spaced = " ".join(text) if any(c.isdigit() for c in text) else text
            return tokenizer(spaced, **kwargs)

    assert BoxGrammar.from_tokenizer(tokenizer) is not None
    assert BoxGrammar.from_tokenizer(DigitWriter()) is None
