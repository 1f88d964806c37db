"""What each button does, as methods of `Handlers(model)`: plain values in, plain values out.

Every per-request setting is an argument; the injected model is only read. Bad input raises
`gr.Error` with a message for the user, repairs and notes go out as `gr.Warning`.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
from PIL import Image

from model.images import ImageInputError
from model.layout import Layout, LayoutError, loads_layouts, parse_layout
from model.results import SamplingConfig

from app import cycle_view
from app.canvas import blank_canvas, canvas_from_layout, canvas_side, check_drawable, layout_from_canvas, recolored
from app.overlay import draw_groundings
from app.phrases import find_phrases, highlighted, join_phrases
from app.palette import color_of, to_hex
from app.uploads import read_image, read_layout_file

logger = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1
MAX_CANDIDATES = 8


@contextmanager
def user_errors():
    """Input problems the model reports -> gr.Error (no traceback reaches the page)."""
    try:
        yield
    except (LayoutError, ImageInputError) as err:
        raise gr.Error(str(err)) from None


def _warn_all(messages: Sequence[str]) -> None:
    for message in messages:
        gr.Warning(message)


def _first_layout(text: str, source: str) -> Layout:
    layouts = loads_layouts(text or "", source=source)
    if len(layouts) > 1:
        gr.Warning(f"{source} holds {len(layouts)} layouts; using the first")
    _warn_all(layouts[0].warnings)
    return layouts[0]


def _layout_json(layout: Layout) -> str:
    return json.dumps(layout.to_dict(), indent=2)


def _seed(seed: float | None, randomize: bool) -> int:
    if randomize:
        return secrets.randbelow(MAX_SEED + 1)
    try:
        return min(max(int(seed or 0), 0), MAX_SEED)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error(f"the seed must be a whole number, got {seed!r}") from None


def _candidate(cycle: dict | None, rank: int | None) -> tuple[dict, dict]:
    """(layout dict, candidate dict) of a cycle JSON, candidate by 0-based rank."""
    if not cycle or not cycle.get("candidates"):
        raise gr.Error("no generated candidates yet: press Generate first")
    candidates = cycle["candidates"]
    index = int(rank or 0)
    if not 0 <= index < len(candidates):
        raise gr.Error(f"there is no candidate #{index + 1}; pick one of 1..{len(candidates)}")
    return cycle["layout"], candidates[index]


class Handlers:
    def __init__(self, model):
        self.model = model  # an EchoGen (or anything with its image_size / cycle / ground)

    @property
    def canvas_side(self) -> int:
        return canvas_side(self.model.image_size)

    # ---- Layout tab ----------------------------------------------------------------------
    def new_canvas(self) -> dict:
        return blank_canvas(self.canvas_side)

    def layout_from_canvas(self, canvas: dict | None, caption: str) -> tuple[str, dict]:
        """Canvas + caption -> (layout JSON, the canvas with boxes recolored by position)."""
        with user_errors():
            layout = layout_from_canvas(canvas, caption)
        _warn_all(layout.warnings)
        return _layout_json(layout), recolored(canvas)

    def export_layout(self, canvas: dict | None, caption: str) -> tuple[str, str]:
        """(layout JSON, path of a .json file to download)."""
        text, _ = self.layout_from_canvas(canvas, caption)
        folder = Path(tempfile.mkdtemp(prefix="echogen-layout-"))
        path = folder / "layout.json"
        path.write_text(text + "\n", encoding="utf-8")
        return text, str(path)

    def import_layout(self, text: str) -> tuple[dict, str]:
        """Layout JSON / JSONL / InstanceDiffusion text -> (canvas, caption)."""
        with user_errors():
            layout = _first_layout(text, "the layout JSON")
        return canvas_from_layout(layout), layout.caption

    def import_file(self, path: str | None) -> tuple[str, dict, str]:
        """An uploaded .json / .jsonl file -> (its text, canvas, caption)."""
        with user_errors():
            text = read_layout_file(path)
        canvas, caption = self.import_layout(text)
        return text, canvas, caption

    def generate(
        self, layout_json: str, seed: float, randomize: bool, cfg: float, temperature: float,
        num_candidates: float, progress: gr.Progress = gr.Progress(),
    ) -> tuple[list, Any, str, int, dict, Any, list[Image.Image]]:
        """Layout -> N images -> re-grounded boxes, scored.

        Returns (overlays, table, summary, seed used, cycle JSON, candidate picker, raw images)."""
        with user_errors():
            layout = _first_layout(layout_json, "the layout")
            check_drawable(layout, self.model.image_size)
        if not layout.caption:
            gr.Warning("no caption: the model is prompted with the phrases only")
        try:
            sampling = SamplingConfig(cfg=float(cfg), temperature=float(temperature))
        except (TypeError, ValueError) as err:
            raise gr.Error(f"bad sampling setting: {err}") from None
        n = int(num_candidates or 1)
        if not 1 <= n <= MAX_CANDIDATES:
            raise gr.Error(f"the number of candidates must be in 1..{MAX_CANDIDATES}, got {n}")
        seed = _seed(seed, randomize)

        progress(None, desc=f"Drawing {n} image(s) and re-grounding {len(layout.objects)} object(s) in each")
        start = time.perf_counter()
        result = self.model.cycle(layout, num_images=n, seed=seed, sampling=sampling,
                                  progress=lambda done, total: progress((done, total), desc="Scoring"))
        seconds = time.perf_counter() - start
        logger.info("cycle: %d object(s), %d candidate(s), seed %d, %.2f s", len(layout.objects), n, seed, seconds)
        return (
            cycle_view.overlays(result),
            cycle_view.table(result),
            cycle_view.summary(result, seconds),
            seed,
            cycle_view.cycle_json(result, seed),
            gr.Radio(choices=cycle_view.candidate_choices(result), value=0),
            [c.image for c in result.candidates],
        )

    def pick_candidate(self, evt: gr.SelectData) -> int:
        return evt.index

    def edit_layout(self, cycle: dict | None, rank: int | None) -> tuple[dict, str, int, bool]:
        """Send a candidate's layout back to the canvas with its seed (randomize off)."""
        layout_dict, candidate = _candidate(cycle, rank)
        with user_errors():
            layout = parse_layout(layout_dict)
        return canvas_from_layout(layout), layout.caption, int(candidate["seed"]), False

    def send_to_grounding(
        self, images: list[Image.Image] | None, cycle: dict | None, rank: int | None
    ) -> tuple[Image.Image, str, Any]:
        """A generated image and its layout's phrases -> the Grounding tab."""
        layout_dict, _ = _candidate(cycle, rank)
        index = int(rank or 0)
        if not images or index >= len(images):
            raise gr.Error("the generated images are gone (the page was reloaded?): press Generate again")
        phrases = [obj["phrase"] for obj in layout_dict["objects"]]
        return images[index], join_phrases(phrases), gr.Tabs(selected="ground")

    # ---- Grounding tab -------------------------------------------------------------------
    def phrases(self, text: str) -> Any:
        """Typed caption -> clickable highlighted phrases, each in its palette color."""
        spans = find_phrases(text or "")
        colors = {}
        for i, span in enumerate(spans):
            colors.setdefault(span.phrase, to_hex(color_of(i)))
        return gr.HighlightedText(value=highlighted(text or "", spans), color_map=colors)

    def pick_phrase(self, evt: gr.SelectData) -> str:
        value = evt.value if isinstance(evt.value, (list, tuple)) else [evt.value, None]
        if len(value) < 2 or not value[1]:
            raise gr.Error("click one of the highlighted phrases", print_exception=False)
        return str(value[1])

    def _ground(self, image_path: str | None, phrases: list[tuple[int, str]]) -> tuple[Image.Image, list[dict]]:
        with user_errors():
            image, notes = read_image(image_path)
            found = self.model.ground([image], [[p for _, p in phrases]])[0]
        _warn_all(notes)
        drawn = [(i, g.phrase, g.box) for (i, _), g in zip(phrases, found) if not g.absent]
        absent = [g.phrase for g in found if g.absent]
        if absent:  # a model taught `none` (model.presence) says these name nothing in the image
            gr.Warning(f"the model does not see {', '.join(absent)} in the image")
        missing = [g.phrase for g in found if g.box is None and not g.absent]
        if missing:
            gr.Warning(f"the model gave no usable box for: {', '.join(missing)}")
        data = [{"phrase": g.phrase, "box": None if g.box is None else [round(v, 1) for v in g.box],
                 "valid": g.valid, **({} if g.present is None else {"present": round(g.present, 3)})}
                for g in found]
        return draw_groundings(image, drawn), data

    def ground(self, image_path: str | None, text: str, phrase: str) -> tuple[Image.Image, list[dict]]:
        """One phrase -> its box on the image, in the phrase's color in `text`."""
        phrase = " ".join((phrase or "").split())
        if not phrase:
            raise gr.Error("no phrase: type a caption and click one of its highlighted phrases")
        known = [s.phrase for s in find_phrases(text or "")]
        index = known.index(phrase) if phrase in known else len(known)
        return self._ground(image_path, [(index, phrase)])

    def ground_all(self, image_path: str | None, text: str) -> tuple[Image.Image, list[dict]]:
        spans = find_phrases(text or "")
        if not spans:
            raise gr.Error("no phrases: type a caption such as 'a red circle and a blue square'")
        return self._ground(image_path, list(enumerate(s.phrase for s in spans)))
