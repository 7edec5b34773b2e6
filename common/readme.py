"""The README's generated sections: their markers, putting a block between them, and two
guards: a quick report never replaces full-profile results, and a section that now shows fewer
runs says so."""

from __future__ import annotations

import re
from pathlib import Path

from .files import write_text

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
HEADLINE_START = "<!-- headline:start -->"  # the README's first screen: one compact table
HEADLINE_END = "<!-- headline:end -->"


def replace_between(text: str, block: str, start: str, end: str) -> str:
    """Put `block` between the marker lines `start` and `end` (appended if absent)."""
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        return f"{head}{start}\n{block.strip()}\n{end}{rest.split(end, 1)[1]}"
    return f"{text.rstrip()}\n\n{start}\n{block.strip()}\n{end}\n"


def _section(text: str) -> str:
    """The README's results section ('' without one)."""
    if README_START not in text or README_END not in text:
        return ""
    return text.split(README_START, 1)[1].split(README_END, 1)[0]


def keeps_full(readme: Path, profile: str) -> bool:
    """True when `readme` shows full-profile results, which a quick report must not replace
    (the quick summary still goes to its own summary.md)."""
    if profile != "quick" or not readme.exists():
        return False
    found = re.search(r"profile `(\w+)`", _section(readme.read_text()))
    return bool(found) and found[1] == "full"


def update(readme: Path, results: str, runs: int, headline: str) -> None:
    """Put `results`, made from `runs` runs, in the README's results section (appended if it
    has none) and `headline` in its headline section where it has one."""
    text = readme.read_text() if readme.exists() else ""
    if (held := re.search(r"<!-- runs: (\d+) -->", _section(text))) and runs < int(held[1]):
        print(
            f"{readme}: its results section held {held[1]} runs and now shows {runs}: the "
            "earlier section is replaced (it is in version control)"
        )
    text = replace_between(text, f"<!-- runs: {runs} -->\n{results}", README_START, README_END)
    if HEADLINE_START in text and HEADLINE_END in text:
        text = replace_between(text, headline, HEADLINE_START, HEADLINE_END)
    write_text(readme, text)
