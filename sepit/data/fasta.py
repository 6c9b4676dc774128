"""FASTA files of proteins: `>id description` header lines, each followed by its sequence on one or more lines."""

from __future__ import annotations

from pathlib import Path

from sepit.data.errors import DataError
from sepit.data.jsonl import open_binary
from sepit.data.protein import make_protein


def read_fasta(path: str | Path) -> dict[str, str]:
    """{protein id: sequence}, each sequence validated; the id is the header's first word (a UniProt header
    `sp|P69905|HBA_HUMAN` gives its accession). A name ending in .gz is read through gzip."""
    proteins: dict[str, str] = {}
    header: tuple[int, str] | None = None
    parts: list[str] = []

    def finish() -> None:
        if header is None:
            return
        line, name = header
        protein = make_protein(name, "".join(parts), where=f"{path}, line {line} (protein {name!r})")
        if proteins.get(name, protein.sequence) != protein.sequence:
            raise DataError(f"{path}, line {line}", f"protein {name!r} appears twice with different sequences",
                            "Give every protein its own id.")
        proteins[name] = protein.sequence

    with open_binary(path) as handle:
        for number, raw in enumerate(handle, 1):
            text = raw.decode("utf-8", errors="replace").strip()
            if text.startswith(">"):
                finish()
                words = text[1:].split()
                if not words:
                    raise DataError(f"{path}, line {number}", "a header without a protein id", "Write '>ID ...'.")
                name = words[0].split("|")[1] if words[0].count("|") >= 2 else words[0]
                header, parts = (number, name), []
            elif text:
                text = text.rstrip("*")  # a translated sequence may end at its stop codon
                if header is None:
                    raise DataError(f"{path}, line {number}", "sequence before the first '>' header",
                                    "Start every protein with a '>ID' line.")
                parts.append(text)
    finish()
    if not proteins:
        raise DataError(str(path), "holds no proteins", "Give a FASTA file of '>ID' headers and sequences.")
    return proteins
