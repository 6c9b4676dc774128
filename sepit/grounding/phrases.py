"""Leftmost-longest phrase matching over normalised word tokens: the matcher under the grounding.

Text and phrases are normalised the same way: Unicode compatibility forms (NFKC), curly apostrophes and primes
as "'", Greek letters spelled out ("α-amylase" is "alpha-amylase"), lower case, words and single punctuation
marks as tokens, hyphens, dashes and minus signs dropped, so "ATP-binding", "ATP binding" and "atp  binding" are
the same two tokens. Phrases live in a token trie; a scan takes, at each position, the longest phrase that starts
there, then goes on after its end. A phrase matches whole tokens only ("binding" never matches inside
"bindings").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Hashable, Iterable

# Words, and single punctuation marks other than hyphens, dashes and the minus sign.
_TOKEN = re.compile(r"[^\W_]+|[^\w\s\-\u2010-\u2015\u2212]")
_GREEK = dict(zip("αβγδεζηθικλμνξοπρστυφχψω",
                  ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
                   "tau upsilon phi chi psi omega").split(), strict=True))
_GREEK["ς"] = "sigma"
_SPELLED = str.maketrans({**{letter: f" {name} " for letter, name in _GREEK.items()}, "\u2019": "'", "\u2018": "'",
                          "\u2032": "'", "\u02bc": "'"})
_END = ""  # trie key of the values that end at a node (no token is empty)


def tokens(text: str) -> tuple[str, ...]:
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).lower().translate(_SPELLED)
    return tuple(_TOKEN.findall(text.lower()))


class PhraseMatcher:
    """Phrases -> values; `find` returns the values of the non-overlapping leftmost-longest matches."""

    def __init__(self):
        self._root: dict = {}

    def _node(self, words: Iterable[str]) -> dict:
        node = self._root
        for token in words:
            node = node.setdefault(token, {})
        return node

    def add(self, phrase: str | tuple[str, ...], value: Hashable) -> None:
        """Add a value to a phrase (text, or its tokens)."""
        words = tokens(phrase) if isinstance(phrase, str) else phrase
        if words:
            self._node(words).setdefault(_END, set()).add(value)

    def replace(self, phrase: str | tuple[str, ...], values: Iterable[Hashable]) -> None:
        """Set a phrase's values, dropping any it had (a name that must win over synonyms)."""
        words = tokens(phrase) if isinstance(phrase, str) else phrase
        if words:
            self._node(words)[_END] = set(values)

    def values(self, phrase: str) -> set:
        node = self._root
        for token in tokens(phrase):
            node = node.get(token)
            if node is None:
                return set()
        return node.get(_END, set())

    def find(self, text: str) -> list[tuple[str, set]]:
        """(matched phrase, its values) for each match, in order."""
        words = tokens(text)
        return [(" ".join(words[start:end]), values) for start, end, values in self.spans(words)]

    def spans(self, words: tuple[str, ...]) -> list[tuple[int, int, set]]:
        """(start, end, values) of each leftmost-longest match in a token sequence."""
        root, found, i, n = self._root, [], 0, len(words)
        while i < n:
            node = root.get(words[i])
            end = values = None
            j = i
            while node is not None:
                j += 1
                if _END in node:
                    end, values = j, node[_END]
                if j == n:
                    break
                node = node.get(words[j])
            if end is None:
                i += 1
            else:
                found.append((i, end, values))
                i = end
        return found
