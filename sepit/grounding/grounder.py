"""Text -> the ontology entries it names: GO terms, EC numbers and DeepLoc locations (docs/evaluation.md,
"Grounding").

- GO terms by name or synonym, leftmost-longest over normalised tokens (phrases.py). A phrase that is some term's
  name means that term only, never another term's synonym. GO.db gives synonyms no exact/broad scope, so the
  default (`synonyms="multiword"`, measured in BENCHMARKS.md) keeps those of two or more words that belong to one
  term: single-word synonyms are mostly abbreviations that lower case turns into English ("AS", "GAS") or broad
  words ("synthesis", "regulation"), which cost 6-13 points of precision on SP14 for under half a point of recall. Obsolete terms are never matched by name: GO keeps such
  names as "protein" and "cell", which would ground nearly every answer.
- EC numbers written out ("EC 3.1.3.16", "3.1.-.-"), and ENZYME 2001 reaction texts, each meaning every EC entry
  that has it.
- DeepLoc's ten locations: a cellular-component term means the most specific location among its is_a/part_of
  ancestors ("mitochondrial inner membrane" -> Mitochondrion, not also Cytoplasm), and the labels themselves
  ("Cell.membrane", "secreted") mean their location.

Entities are grouped by kind: go_mf, go_bp, go_cc, ec, location.
"""

from __future__ import annotations

import functools
from typing import Iterable, Literal, Mapping

from sepit.data.errors import DataError
from sepit.grounding.enzyme import parse_ec, reactions
from sepit.grounding.ontology import GeneOntology, default_ontology
from sepit.grounding.phrases import PhraseMatcher, tokens

KINDS = ("go_mf", "go_bp", "go_cc", "ec", "location")
GROUNDING_VERSION = "1"  # bump when what a text grounds to changes
_NONE: frozenset = frozenset()
Entities = Mapping[str, frozenset]  # kind -> ids
# DeepLoc's ten classes (Almagro Armenteros et al. 2017) and the GO cellular components they stand for.
LOCATIONS = {
    "Nucleus": ("GO:0005634",), "Cytoplasm": ("GO:0005737",), "Extracellular": ("GO:0005576",),
    "Mitochondrion": ("GO:0005739",), "Cell.membrane": ("GO:0005886",), "Endoplasmic.reticulum": ("GO:0005783",),
    "Plastid": ("GO:0009536",), "Golgi.apparatus": ("GO:0005794",), "Lysosome/Vacuole": ("GO:0005773",),
    "Peroxisome": ("GO:0005777",),
}
# Location words that name no GO term of their own: the DeepLoc labels and "secreted".
LOCATION_PHRASES = {**{label: label for label in LOCATIONS}, "secreted": "Extracellular"}
Synonyms = Literal["none", "multiword", "unambiguous", "all"]


class Grounder:
    def __init__(self, ontology: GeneOntology | None = None, synonyms: Synonyms = "multiword"):
        self.ontology = ontology or default_ontology()
        self.synonyms = synonyms
        self._phrases = self._matcher()
        self.ground = functools.lru_cache(maxsize=1 << 17)(self._ground)

    def record(self) -> dict:
        """What a results file says of the grounding, so a board never mixes two of them."""
        return {"version": GROUNDING_VERSION, "go": f"GO {self.ontology.release}",
                "go_fingerprint": self.ontology.fingerprint, "enzyme": "ENZYME 27.0 (2001-10)",
                "synonyms": self.synonyms, "locations": "DeepLoc 10 classes"}

    def _matcher(self) -> PhraseMatcher:
        """One trie of GO names and synonyms, reaction texts and location labels, values (kind, id). A single
        leftmost-longest scan then reads a reaction as its EC entry, not its chemicals as GO terms."""
        names: dict[tuple, set[str]] = {}
        synonyms: dict[tuple, set[str]] = {}
        for go_id, term in self.ontology.terms.items():
            if term.obsolete:
                continue
            names.setdefault(tokens(term.name), set()).add(go_id)
            for synonym in term.synonyms if self.synonyms != "none" else ():
                synonyms.setdefault(tokens(synonym), set()).add(go_id)
        kind = lambda go_id: "go_" + self.ontology.namespace(go_id)  # noqa: E731
        matcher = PhraseMatcher()
        for key, ids in synonyms.items():
            if key in names or (self.synonyms != "all" and len(ids) > 1):
                continue
            if self.synonyms == "multiword" and len(key) < 2:
                continue
            matcher.replace(key, {(kind(i), i) for i in ids})
        for key, ids in names.items():
            matcher.replace(key, {(kind(i), i) for i in ids})
        for ec, texts in reactions().items():
            for text in texts:
                matcher.add(text.rstrip(". "), ("ec", ec))  # the final period is the catalogue's, not the text's
        for phrase, label in LOCATION_PHRASES.items():
            if not matcher.values(phrase):  # "Nucleus" is read as the GO term, which gives the location too
                matcher.add(phrase, ("location", label))
        return matcher

    def _ground(self, text: str) -> dict[str, frozenset]:
        """The entities `text` names, by kind (cached: answers repeat)."""
        found: dict[str, set] = {}
        for _, _, values in self._phrases.spans(tokens(text)):
            for kind, value in values:
                found.setdefault(kind, set()).add(value)
                if kind == "go_cc":
                    found.setdefault("location", set()).update(self.locations_of(value))
        numbers = parse_ec(text)
        if numbers:
            found.setdefault("ec", set()).update(numbers)
        return {kind: frozenset(found[kind]) if kind in found else _NONE for kind in KINDS}

    @functools.lru_cache(maxsize=1 << 14)
    def locations_of(self, go_id: str) -> frozenset[str]:
        """The most specific DeepLoc locations among a cellular component's ancestors (itself included)."""
        closure = self.ontology.closure(go_id)
        hits = {label: ids for label, ids in LOCATIONS.items() if any(i in closure for i in ids)}
        return frozenset(label for label, ids in hits.items()
                         if not any(other != label and any(i in self.ontology.closure(j) for i in ids for j in other_ids)
                                    for other, other_ids in hits.items()))

    def from_annotations(self, annotations: Mapping[str, Iterable[str]], where: str) -> dict[str, frozenset]:
        """Entities from explicit annotations {go: [GO ids], ec: [EC numbers], location: [DeepLoc labels]}:
        GO ids normalised to the release's terms (secondary ids merged; unknown ids are an error)."""
        found: dict[str, set] = {kind: set() for kind in KINDS}
        unknown_keys = set(annotations) - {"go", "ec", "location"}
        if unknown_keys:
            raise DataError(where, f"unknown entity kinds {sorted(unknown_keys)}",
                            "Give entities as {go: [GO ids], ec: [EC numbers], location: [DeepLoc labels]}.")
        for raw in annotations.get("go", ()):
            go_id = self.ontology.normalise(raw)
            if go_id is None:
                raise DataError(where, f"{raw!r} is not a GO id of release {self.ontology.release}",
                                "Use GO ids like GO:0005524.")
            found["go_" + self.ontology.namespace(go_id)].add(go_id)
            if self.ontology.namespace(go_id) == "cc":  # as grounding a text that names it would
                found["location"].update(self.locations_of(go_id))
        for raw in annotations.get("ec", ()):
            numbers = parse_ec(raw if raw.upper().startswith("EC") else f"EC {raw}")
            if len(numbers) != 1:
                raise DataError(where, f"{raw!r} is not an EC number", "Use EC numbers like 3.1.3.16 or 3.1.-.-.")
            found["ec"].add(numbers[0])
        for label in annotations.get("location", ()):
            if label not in LOCATIONS:
                raise DataError(where, f"{label!r} is not a DeepLoc location",
                                f"Use one of {', '.join(LOCATIONS)}.")
            found["location"].add(label)
        return {kind: frozenset(ids) for kind, ids in found.items()}


@functools.cache
def default_grounder() -> Grounder:
    return Grounder()
