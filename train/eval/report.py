"""Metrics output: nested metric dicts as a markdown table, and as a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """[("by_size/small/Acc@0.5", 0.9), ...] from nested dicts, in insertion order."""
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, name + "/")
        else:
            rows.append((name, value))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_table(title: str, metrics: dict[str, Any]) -> str:
    """A two-column markdown table (metric | value) headed by `title`."""
    lines = [f"| {title} | value |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in flatten(metrics)]
    return "\n".join(lines)


def to_builtin(value: Any) -> Any:
    """Numpy scalars and tuples -> plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_builtin(payload), indent=2) + "\n", encoding="utf-8")
