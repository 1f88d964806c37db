"""Layouts: an image size, an optional caption and ordered objects `{phrase, box}`.

Boxes are pixel xyxy floats. `parse_layout` is the one place where untrusted input
(JSON from a file, the app or the CLI) becomes a `Layout`: it clips boxes that stick out
of the image, rejects what cannot be repaired, and says why in a `LayoutError`.

JSON schema (one layout per .json file, one per line in .jsonl):
    {"width": W, "height": H, "caption": "...",
     "objects": [{"phrase": "...", "box": [x1, y1, x2, y2]}]}
InstanceDiffusion-style records are imported with `from_instancediffusion`:
    {"caption": "...", "width": W, "height": H, "annos": [{"bbox": [x, y, w, h], "caption": "..."}]}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

MAX_OBJECTS = 16
MAX_PHRASE_CHARS = 80
MAX_CAPTION_CHARS = 300
MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 4096
MAX_LAYOUT_FILE_BYTES = 16 * 1024 * 1024

Box = tuple[float, float, float, float]


class LayoutError(ValueError):
    """A layout that cannot be used, with a message meant for the person who wrote it."""


@dataclass(frozen=True)
class LayoutObject:
    phrase: str
    box: Box  # pixel xyxy, inside the image, positive area


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    objects: tuple[LayoutObject, ...]
    caption: str = ""
    # Repairs made while parsing (e.g. a clipped box), for the UI to show.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def phrases(self) -> list[str]:
        return [obj.phrase for obj in self.objects]

    @property
    def boxes(self) -> list[Box]:
        return [obj.box for obj in self.objects]

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "caption": self.caption,
            "objects": [{"phrase": o.phrase, "box": [round(v, 2) for v in o.box]} for o in self.objects],
        }

    def resized(self, width: int, height: int) -> Layout:
        """The same layout in another image size (boxes scaled)."""
        sx, sy = width / self.width, height / self.height
        objects = tuple(
            LayoutObject(o.phrase, (o.box[0] * sx, o.box[1] * sy, o.box[2] * sx, o.box[3] * sy))
            for o in self.objects
        )
        return Layout(width, height, objects, self.caption)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LayoutError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise LayoutError(f"{what} must be finite, got {value!r}")
    return float(value)


def _text(value: Any, what: str, max_chars: int, allow_empty: bool) -> str:
    if value is None and allow_empty:
        return ""
    if not isinstance(value, str):
        raise LayoutError(f"{what} must be a string, got {type(value).__name__}")
    text = " ".join(value.split())  # collapse newlines and runs of spaces
    if not text and not allow_empty:
        raise LayoutError(f"{what} is empty")
    if len(text) > max_chars:
        raise LayoutError(f"{what} is {len(text)} characters long; the maximum is {max_chars}")
    return text


def clean_phrase(value: Any, what: str = "phrase") -> str:
    """A phrase with whitespace collapsed, or `LayoutError` when empty or over-long."""
    return _text(value, what, MAX_PHRASE_CHARS, allow_empty=False)


def _side(value: Any, what: str) -> int:
    side = _number(value, what)
    if side != int(side) or not MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE:
        raise LayoutError(f"{what} must be a whole number of pixels in [{MIN_IMAGE_SIDE}, {MAX_IMAGE_SIDE}], got {value!r}")
    return int(side)


def _clip_box(raw: Any, width: int, height: int, what: str) -> tuple[Box, str | None]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise LayoutError(f"{what} must be a list [x1, y1, x2, y2], got {raw!r}")
    x1, y1, x2, y2 = (_number(v, what) for v in raw)
    if x2 <= x1 or y2 <= y1:
        raise LayoutError(f"{what} {list(raw)} has zero or negative area (needs x2 > x1 and y2 > y1)")
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise LayoutError(f"{what} {list(raw)} lies wholly outside the {width}x{height} image")
    note = None
    if clipped != (x1, y1, x2, y2):
        note = f"{what} {list(raw)} was clipped to the {width}x{height} image"
    return clipped, note


def parse_layout(data: Any) -> Layout:
    """Validate a layout dict (model/ schema) and return a `Layout`, or raise `LayoutError`."""
    if not isinstance(data, dict):
        raise LayoutError(f"a layout must be a JSON object, got {type(data).__name__}")
    for key in ("width", "height", "objects"):
        if key not in data:
            raise LayoutError(f"layout is missing the key '{key}'")
    width, height = _side(data["width"], "width"), _side(data["height"], "height")
    caption = _text(data.get("caption"), "caption", MAX_CAPTION_CHARS, allow_empty=True)
    raw_objects = data["objects"]
    if not isinstance(raw_objects, list):
        raise LayoutError("'objects' must be a list")
    if not raw_objects:
        raise LayoutError("the layout has no objects; draw at least one box")
    if len(raw_objects) > MAX_OBJECTS:
        raise LayoutError(f"the layout has {len(raw_objects)} objects; the maximum is {MAX_OBJECTS}")
    objects, warnings = [], []
    for i, raw in enumerate(raw_objects, start=1):
        if not isinstance(raw, dict):
            raise LayoutError(f"object {i} must be a JSON object with 'phrase' and 'box'")
        phrase = _text(raw.get("phrase"), f"object {i} phrase", MAX_PHRASE_CHARS, allow_empty=False)
        box, note = _clip_box(raw.get("box"), width, height, f"object {i} box")
        objects.append(LayoutObject(phrase, box))
        if note:
            warnings.append(note)
    return Layout(width, height, tuple(objects), caption, tuple(warnings))


def from_instancediffusion(data: Any) -> Layout:
    """Import an InstanceDiffusion record (bbox as x, y, w, h; per-instance 'caption')."""
    if not isinstance(data, dict) or "annos" not in data:
        raise LayoutError("an InstanceDiffusion record needs 'annos'")
    if not isinstance(data["annos"], list):
        raise LayoutError("'annos' must be a list")
    objects = []
    for i, anno in enumerate(data["annos"], start=1):
        if not isinstance(anno, dict) or "bbox" not in anno:
            raise LayoutError(f"annotation {i} needs 'bbox' [x, y, w, h]")
        bbox = anno["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise LayoutError(f"annotation {i} bbox must be [x, y, w, h], got {bbox!r}")
        x, y, w, h = (_number(v, f"annotation {i} bbox") for v in bbox)
        objects.append({"phrase": anno.get("caption"), "box": [x, y, x + w, y + h]})
    return parse_layout({
        "width": data.get("width"), "height": data.get("height"),
        "caption": data.get("caption", ""), "objects": objects,
    })


def layout_from_any(data: Any) -> Layout:
    """Our schema, or InstanceDiffusion's when the record has 'annos'."""
    if isinstance(data, dict) and "annos" in data and "objects" not in data:
        return from_instancediffusion(data)
    return parse_layout(data)


def loads_layouts(text: str, source: str = "input") -> list[Layout]:
    """Parse one JSON layout, a JSON list of layouts, or JSONL (one layout per line)."""
    text = text.strip()
    if not text:
        raise LayoutError(f"{source} is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise LayoutError(f"{source} line {n} is not valid JSON: {err.msg} (column {err.colno})") from None
    else:
        records = data if isinstance(data, list) else [data]
    layouts = []
    for n, record in enumerate(records, start=1):
        try:
            layouts.append(layout_from_any(record))
        except LayoutError as err:
            where = f"{source} layout {n}" if len(records) > 1 else source
            raise LayoutError(f"{where}: {err}") from None
    if not layouts:
        raise LayoutError(f"{source} holds no layouts")
    return layouts


def load_layouts(path: str | Path) -> list[Layout]:
    """Read layouts from a .json or .jsonl file."""
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"layout file not found: {path}")
    if path.stat().st_size > MAX_LAYOUT_FILE_BYTES:
        raise LayoutError(f"layout file {path} is larger than {MAX_LAYOUT_FILE_BYTES // 2**20} MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LayoutError(f"layout file {path} is not UTF-8 text") from None
    return loads_layouts(text, source=str(path))


def dumps_layouts(layouts: Iterable[Layout]) -> str:
    """JSONL text, one layout per line."""
    return "".join(json.dumps(layout.to_dict()) + "\n" for layout in layouts)
