"""What the model returns: plain dataclasses shared by the CLI, the app and train/."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from PIL import Image

from model.layout import Box, Layout
from model.metrics import CycleScore
from model.presence import PRESENT_THRESHOLD


# Default beam width of EchoGen's grounding answers (`--beams` on the CLIs; training rewards and
# validation curves pass 1). Stage 1 of the built-in PREVIEW 4, 100 val images, Acc@0.5: 0.366
# greedy, 0.402 (4), 0.432 (8), 0.484 (16). PREVIEW 5's round trip (`python -m model.bench`, 2 CPU
# cores): 0.25 s greedy, 0.34 s with 8 beams.
GROUNDING_BEAMS = 8


@dataclass(frozen=True)
class SamplingConfig:
    """How image tokens are drawn. temperature 0 means greedy."""

    cfg: float = 5.0  # classifier-free guidance weight; 1 disables the unconditional rows
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        if not self.cfg >= 1.0:
            raise ValueError(f"cfg must be >= 1, got {self.cfg}")
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @classmethod
    def from_generation_config(cls, generation_config) -> SamplingConfig:
        """A checkpoint's own sampling defaults: `guidance_scale` and `temperature` of its
        generation_config.json when it says `do_sample`; else Janus-Pro's (CFG 5, temperature 1)."""
        if generation_config is None or not getattr(generation_config, "do_sample", False):
            return cls()
        cfg = getattr(generation_config, "guidance_scale", None)
        temperature = getattr(generation_config, "temperature", None)
        try:
            return cls().with_overrides(cfg=cfg, temperature=temperature)
        except ValueError as err:
            raise ValueError(f"the checkpoint's generation_config.json: {err}") from None

    def generation_config_fields(self) -> dict:
        """The generation_config.json fields that make this config a checkpoint's defaults
        (read back by `from_generation_config`; top_k / top_p are not stored)."""
        if self.temperature == 0:
            raise ValueError("a checkpoint's sampling defaults need a temperature > 0")
        return {"do_sample": True, "guidance_scale": self.cfg, "temperature": self.temperature}

    def with_overrides(self, **fields) -> SamplingConfig:
        """This config with the fields given as not-None replaced (checked again)."""
        return replace(self, **{name: value for name, value in fields.items() if value is not None})


@dataclass(frozen=True)
class Grounding:
    """One phrase grounded in one image."""

    phrase: str
    box: Box | None  # pixel xyxy in the image's own size; None when the answer was unusable
    valid: bool  # the answer was a well-formed in-range box
    text: str  # the raw decoded answer, for debugging
    # P(the answer starts a box rather than `none`), model.presence; None where not measured
    present: float | None = None

    @property
    def absent(self) -> bool:
        """The model says the phrase names nothing in the image (only models taught `none` say so)."""
        return self.present is not None and self.present < PRESENT_THRESHOLD


@dataclass(frozen=True)
class CycleCandidate:
    """One generated image of a layout, its re-grounded boxes and their agreement with the layout."""

    image: Image.Image
    seed: int
    groundings: tuple[Grounding, ...]  # one per layout object, in layout order
    score: CycleScore
    tokens: torch.Tensor | None = None  # [T] the image tokens it was decoded from (model.compose)

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            **{k: v for k, v in self.score.to_dict().items() if k != "objects"},
            "objects": [
                {"phrase": g.phrase, "box": None if g.box is None else [round(v, 2) for v in g.box], **s,
                 **({} if g.present is None else {"present": round(g.present, 4)})}
                for g, s in zip(self.groundings, self.score.to_dict()["objects"])
            ],
        }


@dataclass(frozen=True)
class CycleResult:
    layout: Layout
    candidates: tuple[CycleCandidate, ...]  # best cycle IoU first
