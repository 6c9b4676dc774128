"""Rebuild `data/go.json.gz`, the Gene Ontology the grounding reads, from Bioconductor's GO.db.

    apt-get download r-bioc-go.db && dpkg-deb -x r-bioc-go.db_*.deb godb
    python -m sepit.grounding.build_go godb/usr/lib/R/site-library/GO.db/extdata/GO.sqlite

Kept from GO.sqlite: each term's namespace, name, synonyms (GO.db records no exact/broad scope) and its is_a and
part_of parents (the true-path relations; `regulates` is left out), secondary ids with the term they were merged
into, and obsolete terms (names without the "obsolete " prefix, no parents). Definitions are left out: the
grounding never reads them. The output is deterministic (sorted keys, no gzip timestamp).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

OUTPUT = Path(__file__).parent / "data" / "go.json.gz"
TRUE_PATH = ("isa", "part of")


def read_go_db(path: Path) -> dict:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    meta = dict(db.execute("SELECT name, value FROM metadata"))
    ids = {row_id: go_id for row_id, go_id in db.execute("SELECT _id, go_id FROM go_term")}
    parents: dict[str, set[str]] = defaultdict(set)
    for namespace in ("bp", "mf", "cc"):
        query = f"SELECT _id, _parent_id FROM go_{namespace}_parents WHERE relationship_type IN (?, ?)"
        for child, parent in db.execute(query, TRUE_PATH):
            parents[ids[child]].add(ids[parent])
    synonyms: dict[str, set[str]] = defaultdict(set)
    alt_ids = {}
    for row_id, synonym, secondary, like_id in db.execute("SELECT _id, synonym, secondary, like_go_id FROM go_synonym"):
        if like_id:
            alt_ids[secondary] = ids[row_id]
        else:
            synonyms[ids[row_id]].add(synonym)
    terms = {}
    known = {go_id for go_id, in db.execute("SELECT go_id FROM go_term WHERE ontology != 'universal'")}
    for go_id, name, namespace in db.execute("SELECT go_id, term, ontology FROM go_term"):
        if namespace not in ("BP", "MF", "CC"):
            continue  # the "universal" root row
        synonyms[go_id].discard(name)
        terms[go_id] = [namespace.lower(), name, sorted(parents[go_id] & known), sorted(synonyms[go_id])]
    obsolete = {go_id: [namespace.lower(), name.removeprefix("obsolete ")]
                for go_id, name, namespace in db.execute("SELECT go_id, term, ontology FROM go_obsolete")}
    return {"source": f"{meta.get('GOSOURCENAME')} {meta.get('GOSOURCEDATE')} via Bioconductor GO.db",
            "release": meta.get("GOSOURCEDATE"), "terms": terms,
            "alt_ids": {k: alt_ids[k] for k in sorted(alt_ids) if alt_ids[k] in terms}, "obsolete": obsolete}


def write(ontology: dict, output: Path = OUTPUT) -> None:
    data = json.dumps(ontology, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
        out.write(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("go_sqlite", type=Path)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    ontology = read_go_db(args.go_sqlite)
    write(ontology, args.output)
    print(f"{args.output}: {len(ontology['terms'])} terms, {len(ontology['alt_ids'])} secondary ids, "
          f"{len(ontology['obsolete'])} obsolete, release {ontology['release']}")


if __name__ == "__main__":
    main()
