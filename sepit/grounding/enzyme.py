"""EC numbers in text, and the ENZYME catalogue that maps a reaction text to its EC entry.

`data/enzyme.dat` is ENZYME release 27.0 (October 2001, SIB), shipped unmodified as its terms require (NOTICE.md
beside it): the release whose reaction texts the SP14 references quote. It is parsed here at load time.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from sepit.data.errors import DataError

ENZYME_FILE = Path(__file__).parent / "data" / "enzyme.dat"
LEVELS = 4
# "EC 3.1.3.16", "E.C. 3.1.-.-", "3.1.3.-", "EC 3.1", "EC:2.7.11.n1". A bare number needs all four levels and a
# class 1-7 (so "192.168.0.1" is no enzyme); ASCII digits only.
_LEVEL = r"(?:\d+|-|n\d+)"
EC_PATTERN = re.compile(rf"(?<![\w.])(?:E\.?C\.?[\s:]*(\d+(?:\.{_LEVEL}){{0,3}})|([1-7](?:\.{_LEVEL}){{3}}))"
                        r"(?![\w]|\.\d)", re.IGNORECASE | re.ASCII)
EC_NUMBER = re.compile(rf"[1-7](?:\.{_LEVEL}){{3}}", re.ASCII)
_NUMBER_DOT = re.compile(r"\d\.|E\.?C\.?[\s:]*\d", re.IGNORECASE)


def parse_ec(text: str) -> tuple[str, ...]:
    """EC numbers written out in `text`, as four levels ("3.1.-.-" for a partial one), in order of appearance."""
    if not _NUMBER_DOT.search(text):  # most answers name no EC number at all
        return ()
    found = []
    for match in EC_PATTERN.finditer(text):
        levels = (match.group(1) or match.group(2)).split(".")
        found.append(".".join(levels + ["-"] * (LEVELS - len(levels))))
    return tuple(dict.fromkeys(found))


def common_prefix(numbers) -> str | None:
    """The partial EC number all `numbers` fall under ("3.6.-.-" for 3.6.1.3 and 3.6.4.6); None across classes."""
    levels = list(zip(*(n.split(".") for n in numbers)))
    shared = []
    for values in levels:
        if len(set(values)) > 1 or values[0] == "-":
            break
        shared.append(values[0])
    return ".".join(shared + ["-"] * (LEVELS - len(shared))) if shared else None


def ec_prefix(ec: str, level: int) -> str | None:
    """The first `level` levels of an EC number, or None where the number does not reach that level."""
    levels = ec.split(".")[:level]
    return None if len(levels) < level or "-" in levels else ".".join(levels)


@functools.cache
def reactions(path: Path = ENZYME_FILE) -> dict[str, tuple[str, ...]]:
    """EC number -> the reaction texts of its catalytic-activity (CA) lines, continuation lines joined."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "the ENZYME catalogue of the grounding is missing",
                        "Reinstall the package (the file ships with it, unmodified).")
    entries: dict[str, list[str]] = {}
    current: str | None = None
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as err:
        raise DataError(str(path), f"cannot be read ({err})", "Reinstall the package.") from err
    for number, line in enumerate(lines, 1):
        tag, body = line[:2], line[5:].strip()
        if tag == "ID":
            if not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", body):
                raise DataError(f"{path}, line {number}", f"'{body}' is not an EC number",
                                "The ENZYME file is corrupt: reinstall the package.")
            current = body
            entries[current] = []
        elif tag == "CA" and current is not None:
            entries[current].append(body)
    if not entries:
        raise DataError(str(path), "holds no ENZYME entries", "Reinstall the package.")
    return {ec: tuple(_join(parts)) for ec, parts in entries.items() if parts}


def _join(parts: list[str]) -> list[str]:
    """CA lines -> reactions: a line continues the previous one unless it starts a numbered reaction '(2)'."""
    texts: list[str] = []
    for part in parts:
        if texts and not re.match(r"\(\d+\)\s", part):
            texts[-1] += " " + part
        else:
            texts.append(part)
    return [re.sub(r"^\(\d+\)\s+", "", t) for t in texts]
