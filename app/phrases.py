"""Phrases out of a typed caption, as clickable spans for the grounding tab.

A caption is cut at commas, semicolons, new lines and the word "and"; each piece loses a
leading article or count word and a trailing background clause, so
"a red circle and two blue squares on a beige background" gives "red circle" and
"blue squares". A list typed one phrase per line (or comma-separated) comes back as typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model.layout import MAX_OBJECTS, MAX_PHRASE_CHARS

_SPLIT = re.compile(r"[,;\n]+|\band\b", re.IGNORECASE)
_LEADING = re.compile(r"^(?:(?:a|an|the|one|two|three|four|five|some)\s+)+", re.IGNORECASE)
_TRAILING = re.compile(r"\s+(?:on|under)\s+an?\s+.*\b(?:background|sky)\b.*$", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    phrase: str


def _pieces(text: str):
    """(start, end) of the text between separators."""
    pos = 0
    for sep in _SPLIT.finditer(text):
        yield pos, sep.start()
        pos = sep.end()
    yield pos, len(text)


def find_phrases(text: str) -> list[Span]:
    """Phrase spans in reading order, at most MAX_OBJECTS (duplicates kept: each is clickable)."""
    text = text or ""
    spans: list[Span] = []
    for start, end in _pieces(text):
        end = start + len(_TRAILING.sub("", text[start:end]).rstrip())
        start += len(text[start:end]) - len(text[start:end].lstrip())
        if lead := _LEADING.match(text[start:end]):
            start += lead.end()
        phrase = " ".join(text[start:end].split())
        if phrase and len(phrase) <= MAX_PHRASE_CHARS:
            spans.append(Span(start, end, phrase))
    return spans[:MAX_OBJECTS]


def highlighted(text: str, spans: list[Span]) -> list[tuple[str, str | None]]:
    """`gr.HighlightedText` value: the whole text, phrase spans labelled by their phrase."""
    segments: list[tuple[str, str | None]] = []
    pos = 0
    for span in spans:
        if span.start > pos:
            segments.append((text[pos:span.start], None))
        segments.append((text[span.start:span.end], span.phrase))
        pos = span.end
    if pos < len(text):
        segments.append((text[pos:], None))
    return segments


def join_phrases(phrases: list[str]) -> str:
    """Layout phrases as text that `find_phrases` reads back as the same phrases."""
    text = ", ".join(phrases)
    return text if [s.phrase for s in find_phrases(text)] == list(phrases) else "\n".join(phrases)
