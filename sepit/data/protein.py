"""Protein inputs: a validated sequence with optional C-alpha coordinates, and the one cropping rule.

Everything that enters a model goes through `make_protein` (validation, normalisation) and, at the encoder,
`crop_to_window` (the shared rule for proteins longer than the encoder window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sepit.data.errors import DataError

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
# X unknown, B Asx, Z Glx, U selenocysteine, O pyrrolysine: all in the ESM-2 alphabet.
EXTRA_RESIDUES = "XBZUO"
ALLOWED_RESIDUES = frozenset(STANDARD_RESIDUES + EXTRA_RESIDUES)
# ESM-2 was trained on 1024 tokens: 1022 residues plus BOS and EOS.
ESM2_WINDOW = 1022


@dataclass(frozen=True, eq=False)
class Protein:
    """One protein: `coords` is (L, 3) float32 C-alpha positions in Å, NaN rows for unobserved residues."""

    id: str
    sequence: str
    coords: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sequence)

    @property
    def observed(self) -> np.ndarray:
        """(L,) bool: residues with a finite C-alpha position (all False without coordinates)."""
        if self.coords is None:
            return np.zeros(len(self.sequence), dtype=bool)
        return np.isfinite(self.coords).all(axis=1)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Protein):
            return NotImplemented
        if (self.id, self.sequence) != (other.id, other.sequence):
            return False
        if self.coords is None or other.coords is None:
            return self.coords is None and other.coords is None
        return np.array_equal(self.coords, other.coords, equal_nan=True)

    def __hash__(self) -> int:
        return hash((self.id, self.sequence))

    def __repr__(self) -> str:
        structure = "no coords" if self.coords is None else f"{int(self.observed.sum())} observed CA"
        return f"Protein({self.id!r}, length={len(self)}, {structure})"


def make_protein(id: str, sequence: Any, coords: Any = None, *, where: str = "") -> Protein:
    """Validate and normalise one protein; raise DataError naming `where` and the fix."""
    where = where or f"protein {id!r}"
    if not isinstance(id, str) or not id:
        raise DataError(where, f"protein id must be a non-empty string, got {id!r}", "Give every protein an id.")
    if not isinstance(sequence, str):
        raise DataError(where, f"sequence must be a string, got {type(sequence).__name__}",
                        "Write the sequence as one-letter amino-acid codes.")
    sequence = sequence.strip()
    if not sequence.isascii():  # str.upper() would turn 'ß' into 'SS' and shift every residue after it
        first = next(i for i, letter in enumerate(sequence) if not letter.isascii())
        raise DataError(where, f"non-ASCII letter {sequence[first]!r} at position {first + 1} of the sequence",
                        "Write the sequence with one-letter amino-acid codes.")
    sequence = sequence.upper()
    if not sequence:
        raise DataError(where, "empty sequence", "Remove the record or give its amino-acid sequence.")
    bad = sorted(set(sequence) - ALLOWED_RESIDUES)
    if bad:
        first = min(sequence.index(letter) for letter in bad)
        raise DataError(
            where,
            f"unknown residue letter(s) {', '.join(map(repr, bad))} (first at position {first + 1})",
            f"Use the 20 standard one-letter codes or {', '.join(EXTRA_RESIDUES)} (X for unknown residues).",
        )
    return Protein(id, sequence, None if coords is None else _coords_array(coords, len(sequence), where))


def _coords_array(coords: Any, length: int, where: str) -> np.ndarray:
    """(L, 3) float32 with NaN rows for unobserved residues; None rows and non-finite values become NaN."""
    if not isinstance(coords, (list, tuple, np.ndarray)):
        raise DataError(where, f"coordinates must be a list of [x, y, z] rows, got {type(coords).__name__}",
                        "Give one [x, y, z] C-alpha position (or null) per residue.")
    if not isinstance(coords, np.ndarray):
        coords = [[np.nan] * 3 if row is None else row for row in coords]
    try:
        array = np.array(coords, dtype=np.float32)
    except (TypeError, ValueError):
        array = None
    if array is None or (array.size and (array.ndim != 2 or array.shape[1] != 3)):
        raise DataError(where, "coordinates are not a list of [x, y, z] rows",
                        "Give one [x, y, z] C-alpha position (or null) per residue.")
    array = array.reshape(-1, 3)  # np.array copied the input: safe to edit below
    if len(array) != length:
        raise DataError(where, f"{len(array)} coordinate rows for a sequence of {length} residues",
                        "Give one C-alpha position per residue, null for residues not observed in the structure.")
    # A residue with any non-finite coordinate is treated as unobserved (never an error, never NaN math later).
    array[~np.isfinite(array).all(axis=1)] = np.nan
    array.flags.writeable = False  # proteins are shared between samples: noise a copy, never in place
    return array


def crop_to_window(protein: Protein, window: int = ESM2_WINDOW) -> Protein:
    """The shared crop rule: keep the first `window` residues, sequence and coordinates together.

    The prefix is what ESM-2 and the official SEPIT data (`node_position` cut to 1022) use, so the same
    residues are seen at training and evaluation time and by every model.
    """
    if len(protein) <= window:
        return protein
    coords = None if protein.coords is None else protein.coords[:window]
    return Protein(protein.id, protein.sequence[:window], coords)
