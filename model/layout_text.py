"""The one layout text format shared by generation and grounding (PlanGen-compatible).

    <grounding><ref>red circle</ref><box>[120, 40, 380, 300]</box>...</grounding>

Box numbers are integers 0-1000 of the normalized xyxy box. The same `<ref>..</ref><box>..</box>`
span is the L2I condition (inside `<grounding>`) and the grounding answer, so both tasks
read and write the same tokens: these are the paper's "shared tokens".

A grounding answer may also be `none</box>`: the phrase names nothing in the image. Models
trained with absent phrases (`pmtp.absent_share`) learn it; `model.presence` reads how sure
the model is that a phrase is there (`Grounding.present`).

Parsing model output never raises: a malformed, partial or out-of-range answer yields a
`ParsedBox` with `valid=False` (and the best box it could recover, if any).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model.layout import Box, Layout

GROUNDING_OPEN, GROUNDING_CLOSE = "<grounding>", "</grounding>"
REF_OPEN, REF_CLOSE = "<ref>", "</ref>"
BOX_OPEN, BOX_CLOSE = "<box>", "</box>"
LAYOUT_SPECIAL_TOKENS = (GROUNDING_OPEN, GROUNDING_CLOSE, REF_OPEN, REF_CLOSE, BOX_OPEN, BOX_CLOSE)
COORD_SCALE = 1000
NONE_ANSWER = "none"  # the grounding answer for a phrase that names nothing in the image

NormBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class ParsedBox:
    box: NormBox | None  # 0-1000 xyxy, or None when nothing usable was found
    valid: bool  # well-formed, in range and positive area (or a well-formed `none`)
    phrase: str | None = None
    absent: bool = False  # the answer was `none`: the phrase names nothing in the image


def normalize_box(box: Box, width: int, height: int) -> NormBox:
    """Pixel xyxy -> integer 0-1000 xyxy (clamped)."""
    scale = (width, height, width, height)
    return tuple(min(COORD_SCALE, max(0, round(v / s * COORD_SCALE))) for v, s in zip(box, scale))  # type: ignore[return-value]


def denormalize_box(box: NormBox, width: int, height: int) -> Box:
    """Integer 0-1000 xyxy -> pixel xyxy."""
    scale = (width, height, width, height)
    return tuple(v / COORD_SCALE * s for v, s in zip(box, scale))  # type: ignore[return-value]


def letterbox_normalize(box: Box, width: int, height: int) -> NormBox:
    """Pixel xyxy of a width x height image -> 0-1000 of the centered square Janus pads it to."""
    side = max(width, height)
    dx, dy = (side - width) / 2, (side - height) / 2
    return normalize_box((box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy), side, side)


def letterbox_denormalize(box: NormBox, width: int, height: int) -> Box:
    """Inverse of `letterbox_normalize`, clipped to the image."""
    side = max(width, height)
    dx, dy = (side - width) / 2, (side - height) / 2
    x1, y1, x2, y2 = denormalize_box(box, side, side)
    return (min(max(x1 - dx, 0.0), width), min(max(y1 - dy, 0.0), height),
            min(max(x2 - dx, 0.0), width), min(max(y2 - dy, 0.0), height))


def box_answer(box: NormBox | None) -> str:
    """`[x1, y1, x2, y2]`, or `none` for an absent phrase: what a grounding answer writes before `</box>`."""
    return NONE_ANSWER if box is None else f"[{box[0]}, {box[1]}, {box[2]}, {box[3]}]"


def format_box(box: NormBox) -> str:
    return f"{BOX_OPEN}{box_answer(box)}{BOX_CLOSE}"


def format_object(phrase: str, box: NormBox) -> str:
    """`<ref>phrase</ref><box>[x1, y1, x2, y2]</box>`: one layout entry and one grounding answer."""
    return f"{REF_OPEN}{phrase}{REF_CLOSE}{format_box(box)}"


def format_layout(layout: Layout) -> str:
    entries = "".join(
        format_object(o.phrase, normalize_box(o.box, layout.width, layout.height)) for o in layout.objects
    )
    return f"{GROUNDING_OPEN}{entries}{GROUNDING_CLOSE}"


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_REF = re.compile(re.escape(REF_OPEN) + r"(.*?)" + re.escape(REF_CLOSE), re.S)


def parse_box(text: str) -> ParsedBox:
    """Read the first box of a model answer such as `[12, 40, 300, 500]</box>`.

    Tolerant by design: missing brackets or tags, extra spaces and trailing junk are fine as
    long as four numbers come first; anything else gives an invalid box. An answer that is
    `none` gives a valid, absent `ParsedBox` without a box."""
    if not isinstance(text, str):
        return ParsedBox(None, False)
    start = text.find(BOX_OPEN)
    body = text[start + len(BOX_OPEN):] if start >= 0 else text
    end = body.find(BOX_CLOSE)
    if end >= 0:
        body = body[:end]
    stop = body.find("]")
    if body.strip().lower() == NONE_ANSWER:
        return ParsedBox(None, True, absent=True)
    if stop >= 0:
        body = body[:stop]
    numbers = _NUMBER.findall(body)
    if len(numbers) < 4:
        return ParsedBox(None, False)
    values = [float(n) for n in numbers[:4]]
    in_range = all(0 <= v <= COORD_SCALE for v in values)
    clamped = tuple(min(COORD_SCALE, max(0, round(v))) for v in values)
    positive = clamped[2] > clamped[0] and clamped[3] > clamped[1]
    valid = in_range and positive and len(numbers) == 4
    return ParsedBox(clamped if positive else None, valid)  # type: ignore[arg-type]


def parse_layout_text(text: str) -> list[ParsedBox]:
    """All `<ref>phrase</ref><box>[...]</box>` entries of a layout block, in order."""
    if not isinstance(text, str):
        return []
    entries = []
    refs = list(_REF.finditer(text))
    for i, match in enumerate(refs):
        end = refs[i + 1].start() if i + 1 < len(refs) else len(text)
        parsed = parse_box(text[match.end():end])
        entries.append(ParsedBox(parsed.box, parsed.valid, match.group(1).strip()))
    return entries
