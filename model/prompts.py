"""Prompt text for both tasks in Janus-Pro's chat format ("<|User|>: ...\\n\\n<|Assistant|>:").

L2I (as PlanGen does): the caption in the user turn, the layout block after the assistant tag,
then `<begin_of_image>`; image tokens follow.
Grounding: the image and a question in the user turn; the assistant turn is forced to begin
with `<ref>phrase</ref><box>` so the model only writes `[x1, y1, x2, y2]</box>`.
Both tasks thus share the `<ref>..</ref><box>[..]</box>` tokens.
"""

from __future__ import annotations

from model.layout import Layout
from model.layout_text import BOX_CLOSE, BOX_OPEN, REF_CLOSE, REF_OPEN, NormBox, box_answer, format_layout
from model.tokens import ASSISTANT_TAG, USER_TAG


def _chat(user: str, assistant_prefix: str) -> str:
    return f"{USER_TAG}: {user}\n\n{ASSISTANT_TAG}:{assistant_prefix}"


def layout_caption(layout: Layout) -> str:
    """The user-turn text: the caption, or the phrases when there is none."""
    return layout.caption or ", ".join(layout.phrases)


def l2i_prompt(layout: Layout, boi_token: str) -> str:
    return _chat(layout_caption(layout), format_layout(layout)) + boi_token


def image_block(boi_token: str, image_token: str, eoi_token: str, num_image_tokens: int) -> str:
    """What JanusProcessor expands one `<image_placeholder>` into."""
    return boi_token + image_token * num_image_tokens + eoi_token


def grounding_prompt(phrase: str, image_text: str) -> str:
    question = f"{image_text}\nWhere is {REF_OPEN}{phrase}{REF_CLOSE}?"
    return _chat(question, f"{REF_OPEN}{phrase}{REF_CLOSE}{BOX_OPEN}")


def grounding_target(box: NormBox | None, eos_token: str) -> str:
    """The grounding answer after the forced prefix (training target); box None: `none</box>`,
    the phrase names nothing in the image."""
    return f"{box_answer(box)}{BOX_CLOSE}{eos_token}"
