"""EchoGen's unified model: layout format, layout-to-image, grounding and the cycle check.

`from model import EchoGen` loads lazily, so importing `model.layout` stays cheap.
"""

from __future__ import annotations

_EXPORTS = {
    "EchoGen": "model.echogen",
    "Generation": "model.echogen",
    "Layout": "model.layout",
    "LayoutObject": "model.layout",
    "LayoutError": "model.layout",
    "parse_layout": "model.layout",
    "load_layouts": "model.layout",
    "SamplingConfig": "model.results",
    "Grounding": "model.results",
    "CycleResult": "model.results",
    "ModelLoadError": "model.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
