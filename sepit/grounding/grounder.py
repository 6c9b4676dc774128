"""Text -> the ontology entries it names: GO terms, EC numbers and DeepLoc locations (docs/evaluation.md,
"Grounded metrics").

- GO terms by name or synonym, leftmost-longest over normalised tokens (phrases.py). A phrase that is some term's
  name means that term only, never another term's synonym. GO.db gives synonyms no exact/broad scope, so the
  default (`synonyms="multiword"`, measured in BENCHMARKS.md) keeps those of two or more words that belong to one
  term: single-word synonyms are mostly abbreviations that lower case turns into English ("AS", "GAS") or broad
  words ("synthesis", "regulation"), which cost 5-13 points of precision on SP14 for under half a point of
  recall. Terms made obsolete since are matched by names of two or more words, where no current term or synonym
  has the phrase ("oxidation-reduction process" in 2014 annotations); single-word ones never ("protein",
  "cell"). The three namespace roots, and "Gene Ontology", name nothing: "its Gene Ontology cellular component"
  is no place, nor the obsolete term that shares the name.
- EC numbers written out ("EC 3.1.3.16", "3.1.-.-"), and ENZYME 2001 reaction texts. A reaction text shared by
  several EC entries means the partial number they all fall under ("ATP + H(2)O = ADP + phosphate" is 3.6.-.-),
  or nothing where they differ in class.
- DeepLoc's ten locations: a cellular-component term means the most specific location among its is_a/part_of
  ancestors ("mitochondrial inner membrane" -> Mitochondrion, not also Cytoplasm), and "secreted" and
  "extracellular" mean Extracellular.

Entities are grouped by kind: go_mf, go_bp, go_cc, ec, location. A reference also has `location_label`: the
locations an answer must name (its DeepLoc labels where annotated, else all the locations it names).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
from types import MappingProxyType
from typing import Any, Literal, Mapping

from sepit.data.errors import DataError
from sepit.grounding.enzyme import ENZYME_FILE, EC_NUMBER, common_prefix, parse_ec, reactions
from sepit.grounding.ontology import ROOTS, GeneOntology, default_ontology
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
# Location words that no GO name or kept synonym covers.
LOCATION_PHRASES = {"secreted": "Extracellular", "extracellular": "Extracellular"}
ANNOTATION_KINDS = ("go", "ec", "location")
# Phrases about the ontology, not biology; with the roots' names and synonyms they name nothing.
META_PHRASES = ("Gene Ontology",)
Synonyms = Literal["none", "multiword", "unambiguous", "all"]


class Grounder:
    def __init__(self, ontology: GeneOntology | None = None, synonyms: Synonyms = "multiword"):
        self.ontology = ontology or default_ontology()
        self.synonyms = synonyms
        self._locations: dict[str, frozenset[str]] = {}
        with paused_gc():
            self._phrases = self._matcher()
        self.ground = functools.lru_cache(maxsize=1 << 17)(self._ground)
        self.reference = functools.lru_cache(maxsize=1 << 16)(self._reference)

    def record(self) -> dict:
        """What a results file says of the grounding, so a board never mixes two of them."""
        return {"version": GROUNDING_VERSION, "go": f"GO {self.ontology.release}",
                "go_fingerprint": self.ontology.fingerprint, "enzyme": "ENZYME 27.0 (2001-10)",
                "enzyme_fingerprint": _enzyme_fingerprint(), "synonyms": self.synonyms,
                "locations": "DeepLoc 10 classes"}

    def _matcher(self) -> PhraseMatcher:
        """One trie of GO names and synonyms, reaction texts and location words, values (kind, id). A single
        leftmost-longest scan then reads a reaction as its EC entry, not its chemicals as GO terms."""
        names: dict[tuple, set[str]] = {}
        synonyms: dict[tuple, set[str]] = {}
        obsolete: dict[tuple, set[str]] = {}
        for go_id, term in self.ontology.terms.items():
            if go_id in ROOTS:
                continue
            if term.obsolete:
                obsolete.setdefault(tokens(term.name), set()).add(go_id)
                continue
            names.setdefault(tokens(term.name), set()).add(go_id)
            for synonym in term.synonyms if self.synonyms != "none" else ():
                synonyms.setdefault(tokens(synonym), set()).add(go_id)
        matcher = PhraseMatcher()
        for key, ids in obsolete.items():
            if len(key) > 1 and len(ids) == 1:
                matcher.replace(key, self._values(ids))
        for key, ids in synonyms.items():
            if key in names or (self.synonyms != "all" and len(ids) > 1):
                continue
            if self.synonyms == "multiword" and len(key) < 2:
                continue
            matcher.replace(key, self._values(ids))
        for key, ids in names.items():
            matcher.replace(key, self._values(ids))
        for phrase in META_PHRASES + tuple(p for r in ROOTS for p in (self.ontology.terms[r].name,
                                                                      *self.ontology.terms[r].synonyms)):
            matcher.replace(phrase, ())  # read, and naming nothing: not even an obsolete term of that name
        by_text: dict[str, set[str]] = {}
        for ec, texts in reactions().items():
            for text in texts:
                by_text.setdefault(text.rstrip(". "), set()).add(ec)  # the final period is the catalogue's
        for text, numbers in by_text.items():
            shared = next(iter(numbers)) if len(numbers) == 1 else common_prefix(numbers)
            if shared:
                matcher.add(text, ("ec", shared))
        for phrase, label in LOCATION_PHRASES.items():
            if not matcher.values(phrase):
                matcher.add(phrase, ("location", label))
        return matcher

    def _values(self, go_ids) -> set[tuple[str, str]]:
        """What naming these terms means: (kind, id) for each, and a cellular component's locations."""
        values = set()
        for go_id in go_ids:
            values.add(("go_" + self.ontology.namespace(go_id), go_id))
            if self.ontology.namespace(go_id) == "cc":
                values.update(("location", label) for label in self.locations_of(go_id))
        return values

    def _ground(self, text: str) -> Mapping[str, frozenset]:
        """The entities `text` names, by kind (cached, so read-only: answers repeat)."""
        found: dict[str, set] = {}
        for _, _, values in self._phrases.spans(tokens(text)):
            for kind, value in values:
                found.setdefault(kind, set()).add(value)
        numbers = parse_ec(text)
        if numbers:
            found.setdefault("ec", set()).update(numbers)
        return MappingProxyType({kind: frozenset(found[kind]) if kind in found else _NONE for kind in KINDS})

    def _reference(self, text: str) -> Mapping[str, frozenset]:
        """A reference grounded from its text: the locations it names are the ones an answer must name (cached:
        one object per text, so per-reference work is done once)."""
        found = self.ground(text)
        return MappingProxyType({**found, "location_label": found["location"]})

    def locations_of(self, go_id: str) -> frozenset[str]:
        """The most specific DeepLoc locations among a cellular component's ancestors (itself included)."""
        found = self._locations.get(go_id)
        if found is None:
            closure = self.ontology.closure(go_id)
            hits = {label: ids for label, ids in LOCATIONS.items() if any(i in closure for i in ids)}
            found = self._locations[go_id] = frozenset(
                label for label, ids in hits.items()
                if not any(other != label and any(i in self.ontology.closure(j) for i in ids for j in other_ids)
                           for other, other_ids in hits.items()))
        return found

    def from_annotations(self, annotations: Any, where: str) -> Mapping[str, frozenset]:
        """Entities from explicit annotations {go: [GO ids], ec: [EC numbers], location: [DeepLoc labels]}.

        GO ids are normalised to the release's terms (secondary ids merged); the roots name nothing and are left
        out. Cellular components add their locations, as grounding their names would; the DeepLoc labels, where
        given, are the locations an answer must name (`location_label`)."""
        check_annotations(annotations, where, self.ontology)
        found: dict[str, set] = {kind: set() for kind in KINDS}
        for raw in annotations.get("go", ()):
            go_id = self.ontology.normalise(raw)
            if go_id in ROOTS:
                continue
            found["go_" + self.ontology.namespace(go_id)].add(go_id)
            if self.ontology.namespace(go_id) == "cc":
                found["location"].update(self.locations_of(go_id))
        found["ec"].update(parse_ec("EC " + raw.removeprefix("EC").strip())[0] for raw in annotations.get("ec", ()))
        labels = frozenset(annotations.get("location", ()))
        found["location"] |= labels
        return MappingProxyType({**{kind: frozenset(ids) for kind, ids in found.items()},
                                 "location_label": labels or frozenset(found["location"])})


def check_annotations(annotations: Any, where: str, ontology: GeneOntology | None = None) -> None:
    """A sample's metadata.entities, checked: an object of lists of strings, known GO ids, EC numbers and
    DeepLoc labels; DataError naming `where` and the fix otherwise."""
    shape = "Give entities as {go: [GO ids], ec: [EC numbers], location: [DeepLoc labels]}."
    if not isinstance(annotations, dict):
        raise DataError(where, f"metadata.entities must be an object, got {type(annotations).__name__}", shape)
    unknown = sorted(set(annotations) - set(ANNOTATION_KINDS))
    if unknown:
        raise DataError(where, f"unknown entity kinds {unknown}", shape)
    for kind, values in annotations.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataError(where, f"metadata.entities.{kind} must be a list of strings, got {values!r}", shape)
    ontology = ontology or default_ontology()
    for raw in annotations.get("go", ()):
        if ontology.normalise(raw) is None:
            raise DataError(where, f"{raw!r} is not a GO id of release {ontology.release}",
                            "Use GO ids like GO:0005524.")
    for raw in annotations.get("ec", ()):
        if not EC_NUMBER.fullmatch(raw.removeprefix("EC").strip()):
            raise DataError(where, f"{raw!r} is not an EC number",
                            "Use EC numbers of four levels, class 1-7, like 3.1.3.16 or 3.1.-.-.")
    for label in annotations.get("location", ()):
        if label not in LOCATIONS:
            raise DataError(where, f"{label!r} is not a DeepLoc location", f"Use one of {', '.join(LOCATIONS)}.")


@contextlib.contextmanager
def paused_gc():
    """Cyclic garbage collection off while grounding makes many small objects: each collection would rescan the
    phrase trie's hundreds of thousands of dicts (a third of the grounding's time in bench/scoring.py). Reference
    counting still frees everything that is not a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.cache
def _enzyme_fingerprint() -> str:
    return hashlib.sha256(ENZYME_FILE.read_bytes()).hexdigest()[:12]


@functools.cache
def default_grounder() -> Grounder:
    """The process's grounder. Its objects are moved out of the cyclic collector's sight (gc.freeze): they live as
    long as the process, and every collection would otherwise rescan them while scoring makes millions of small
    objects (it slowed BLEU, ROUGE and METEOR by a fifth in bench/scoring.py)."""
    grounder = Grounder()
    gc.freeze()
    return grounder
