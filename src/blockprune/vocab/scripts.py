"""The Unicode script of a character, so unseen words of a seen script can fall back to characters."""

from __future__ import annotations

import functools
import unicodedata

try:  # a dependency of transformers; only used to name the Unicode script of a character
    import regex as _regex
except ImportError:  # pragma: no cover - transformers requires it
    _regex = None


@functools.cache
def _script_pattern(name: str):
    try:
        return _regex.compile(rf"\p{{Script={name}}}")
    except Exception:  # unknown property value
        return None


@functools.cache
def script_key(ch: str) -> str:
    """A label for the Unicode script of one character.

    Letters and marks get their script name (``Devanagari``, ``Latin``). Characters shared by
    scripts (punctuation, digits, symbols: script ``Common``/``Inherited``) are grouped by their
    128-code-point page instead (``Common/U+2000`` is general punctuation), so that seeing a
    comma keeps other ASCII punctuation, not every emoji and box-drawing character.
    """
    page = f"U+{ord(ch) & ~0x7F:04X}"
    if _regex is not None:
        for shared in ("Common", "Inherited"):
            if _script_pattern(shared).match(ch):
                return f"{shared}/{page}"
    try:
        words = unicodedata.name(ch).split()
    except ValueError:  # unnamed: private use, unassigned, controls
        return f"Unnamed/{page}"
    if _regex is not None:
        for n in range(1, min(3, len(words)) + 1):
            pattern = _script_pattern("_".join(words[:n]))
            if pattern is not None and pattern.match(ch):
                return "_".join(words[:n]).title()
    cat = unicodedata.category(ch)
    if cat[0] in "PSNZC" and not words[0].isalpha():
        return f"Common/{page}"
    return words[0].title()
