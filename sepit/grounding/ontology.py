"""The Gene Ontology as the grounding reads it: names and synonyms to match, ids normalised to the release's
current terms, and true-path closures (is_a and part_of) for hierarchical scores.

The data is `data/go.json.gz`, derived from GO release 2022-07-01 by `build_go.py` (docs/evaluation.md,
"Grounding"). A missing or unreadable file is an error that names the file and how to rebuild it: scores
computed without the ontology would be silently different numbers.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sepit.data.errors import DataError

DATA = Path(__file__).parent / "data"
GO_FILE = DATA / "go.json.gz"
NAMESPACES = ("mf", "bp", "cc")
ROOTS = frozenset({"GO:0003674", "GO:0008150", "GO:0005575"})  # molecular_function, biological_process, ...
REBUILD = ("Reinstall the package, or rebuild the file with `python -m sepit.grounding.build_go GO.sqlite` "
           "(GO.sqlite from Debian's r-bioc-go.db; see docs/evaluation.md).")


@dataclass(frozen=True)
class Term:
    namespace: str  # mf, bp or cc
    name: str
    parents: tuple[str, ...]  # is_a and part_of
    synonyms: tuple[str, ...]
    obsolete: bool = False


class GeneOntology:
    def __init__(self, terms: dict[str, Term], alt_ids: dict[str, str], release: str, fingerprint: str):
        self.terms, self.alt_ids, self.release, self.fingerprint = terms, alt_ids, release, fingerprint
        self._closures: dict[str, frozenset[str]] = {}

    @classmethod
    def load(cls, path: Path = GO_FILE) -> GeneOntology:
        path = Path(path)
        if not path.is_file():
            raise DataError(str(path), "the Gene Ontology file of the grounding is missing", REBUILD)
        try:
            raw = path.read_bytes()
            data = json.loads(gzip.decompress(raw))
            terms = {go_id: Term(ns, name, tuple(parents), tuple(synonyms))
                     for go_id, (ns, name, parents, synonyms) in data["terms"].items()}
            for go_id, (ns, name) in data["obsolete"].items():
                terms.setdefault(go_id, Term(ns, name, (), (), obsolete=True))
            alt_ids = dict(data["alt_ids"])
            release = data["release"]
        except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
            raise DataError(str(path), f"the Gene Ontology file is corrupt ({type(err).__name__}: {err})",
                            REBUILD) from err
        if not terms or any(t.namespace not in NAMESPACES for t in terms.values()):
            raise DataError(str(path), "the Gene Ontology file holds no terms or an unknown namespace", REBUILD)
        dangling = next((p for t in terms.values() for p in t.parents if p not in terms), None)
        if dangling is not None:
            raise DataError(str(path), f"the Gene Ontology file names a parent {dangling} it does not hold", REBUILD)
        return cls(terms, alt_ids, release, hashlib.sha256(raw).hexdigest()[:12])

    def normalise(self, go_id: str) -> str | None:
        """The current id of a term (a secondary id gives the term it was merged into); None if unknown."""
        go_id = self.alt_ids.get(go_id, go_id)
        return go_id if go_id in self.terms else None

    def namespace(self, go_id: str) -> str:
        return self.terms[go_id].namespace

    def closure(self, go_id: str) -> frozenset[str]:
        """The term and all its is_a / part_of ancestors, without the three namespace roots (memoised)."""
        found = self._closures.get(go_id)
        if found is None:
            ancestors = {go_id}
            for parent in self.terms[go_id].parents:
                ancestors |= self.closure(parent)
            found = self._closures[go_id] = frozenset(ancestors - ROOTS)
        return found


@functools.cache
def default_ontology() -> GeneOntology:
    return GeneOntology.load()
