"""Reader and writer for the official SEPIT-Data release layout, loaded as released.

    pdb.h5                      one group per protein id: `sequence` (array holding one bytes string),
                                `node_position` (n x 3 C-alpha, n = L or cut to the first 1022 residues)
    sequences.csv               optional: `id` + sequence column, for ids missing from pdb.h5 (no coords)
    stage0/train.jsonl          {"id", "caption"}: protein-caption pairs for the warm-up
    stage{1,2}/{train,qa_test}.jsonl
                                {"id", "conversation": [{"role": "user", "content": "...<protein>..."},
                                 {"role": "assistant", "content": "..."}, ...]}

Rows name the protein by `id`; one protein may have many rows, so a sample's id is `<id>#<k>` for the
k-th row of that protein, unless the row carries our optional `sample_id` (with `task`, `choices`), which
`write_sepit_data` adds so that an export loads back into identical samples. The official code marks missing
coordinates with zeros; this reader treats (0, 0, 0) and non-finite rows as unobserved.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

import h5py
import numpy as np

from sepit.data.errors import DataError, location
from sepit.data.jsonl import field, read_jsonl, write_jsonl_atomic
from sepit.data.protein import ESM2_WINDOW, Protein, make_protein
from sepit.data.sample import CaptionPair, InstructionSample, make_sample

STAGES = ("stage0", "stage1", "stage2")
YES_NO = ("yes", "no")


class SepitData:
    """One SEPIT-Data folder. Proteins are read from pdb.h5 on demand, so a release of any size fits."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.h5_path = self.root / "pdb.h5"
        if not self.h5_path.is_file():
            raise DataError(str(self.h5_path), "pdb.h5 not found",
                            "Point to a SEPIT-Data folder holding pdb.h5 and stage0/ stage1/ stage2/.")
        self._h5 = None
        self._csv: dict[str, str] | None = None
        self._ids: frozenset[str] | None = None
        self._proteins: dict[str, Protein] = {}  # rows share proteins: read each group once

    def _file(self):
        if self._h5 is None:
            try:
                self._h5 = h5py.File(self.h5_path, "r")
            except OSError as err:
                raise DataError(str(self.h5_path), f"not a readable HDF5 file ({err})",
                                "Download pdb.h5 again (with git lfs, not the pointer file).") from None
        return self._h5

    def _fallback_sequences(self) -> dict[str, str]:
        if self._csv is None:
            path = self.root / "sequences.csv"
            self._csv = {}
            if path.is_file():
                with open(path, newline="", encoding="utf-8-sig") as handle:
                    reader = csv.DictReader(handle)
                    columns = [c.strip().lower() for c in reader.fieldnames or []]
                    if "id" not in columns or "sequence" not in columns:
                        raise DataError(str(path), f"columns {reader.fieldnames} lack 'id' and 'sequence'",
                                        "Write a header line 'id,sequence'.")
                    id_key, seq_key = (reader.fieldnames[columns.index(c)] for c in ("id", "sequence"))
                    for row in reader:
                        if row.get(id_key) and row.get(seq_key):
                            self._csv[row[id_key].strip()] = row[seq_key].strip()
        return self._csv

    def _h5_ids(self) -> frozenset[str]:
        if self._ids is None:
            self._ids = frozenset(self._file().keys())
        return self._ids

    def __contains__(self, protein_id: str) -> bool:
        return protein_id in self._h5_ids() or protein_id in self._fallback_sequences()

    def protein(self, protein_id: str) -> Protein:
        if protein_id not in self._proteins:
            self._proteins[protein_id] = self._read_protein(protein_id)
        return self._proteins[protein_id]

    def _read_protein(self, protein_id: str) -> Protein:
        where = f"{self.h5_path} (group {protein_id!r})"
        if protein_id not in self._h5_ids():
            if protein_id in self._fallback_sequences():
                return make_protein(protein_id, self._csv[protein_id], where=f"{self.root / 'sequences.csv'}")
            raise DataError(where, "no such protein", "Add the protein to pdb.h5 or remove the rows that use it.")
        group = self._file()[protein_id]
        for name in ("sequence", "node_position"):
            if not isinstance(group.get(name), h5py.Dataset):
                raise DataError(where, f"missing dataset {name!r}",
                                "Each protein group needs `sequence` and `node_position`.")
        sequence = np.asarray(group["sequence"][()]).reshape(-1)
        if len(sequence) != 1 or not isinstance(sequence[0], (bytes, str)):
            raise DataError(where, f"`sequence` holds {len(sequence)} value(s) of type {sequence.dtype}",
                            "Store the whole sequence as one string: np.array([b'MKV...']).")
        try:
            sequence = sequence[0].decode("ascii") if isinstance(sequence[0], bytes) else str(sequence[0])
        except UnicodeDecodeError:
            raise DataError(where, "`sequence` is not ASCII text", "Store one-letter amino-acid codes.") from None
        coords = np.asarray(group["node_position"][()])
        if coords.dtype.kind not in "fiu" or coords.ndim != 2 or coords.shape[1] != 3:
            raise DataError(where, f"node_position has shape {coords.shape}, expected (length, 3)",
                            "Store one [x, y, z] C-alpha row per residue.")
        if len(coords) == ESM2_WINDOW < len(sequence):
            # Released files cut coordinates to the ESM-2 window; residues past it are simply unobserved.
            coords = np.concatenate([coords, np.full((len(sequence) - len(coords), 3), np.nan, np.float32)])
        coords = coords.astype(np.float32)
        coords[(coords == 0).all(axis=1)] = np.nan
        protein = make_protein(protein_id, sequence, coords, where=where)
        return protein if protein.observed.any() else Protein(protein.id, protein.sequence, None)

    def files(self) -> dict[tuple[str, str], Path]:
        """{(stage, split): path} of the instruction files present."""
        return {(stage, path.stem): path for stage in STAGES for path in sorted((self.root / stage).glob("*.jsonl"))}

    def _path(self, stage: str, split: str) -> Path:
        path = self.root / stage / f"{split}.jsonl"
        if not path.is_file():
            present = ", ".join(f"{s}/{p}" for s, p in self.files()) or "none"
            raise DataError(str(path), "file not found", f"Instruction files present: {present}.")
        return path

    def caption_pairs(self, split: str = "train") -> list[CaptionPair]:
        """Stage-0 rows {"id", "caption"} as protein-caption pairs."""
        path, pairs, seen = self._path("stage0", split), [], Counter()
        for line, row in read_jsonl(path):
            where = location(path, line, row.get("id"))
            protein_id = self._protein_id(row, where)
            caption = field(row, "caption", str, where)
            pair_id = row.get("sample_id") or f"{protein_id}#{seen[protein_id]}"
            seen[protein_id] += 1
            pairs.append(CaptionPair(pair_id, self.protein(protein_id), caption))
        return pairs

    def samples(self, stage: str, split: str) -> list[InstructionSample]:
        """Conversation rows as instruction samples: the first user turn asks, the next assistant turn answers.

        Later turns are kept in metadata["followup"]; a yes/no answer makes a closed-set sample (the official
        yes/no scorer compares the lower-cased reference with the last yes/no it finds).
        """
        path, samples, seen = self._path(stage, split), [], Counter()
        for line, row in read_jsonl(path):
            where = location(path, line, row.get("id"))
            protein_id = self._protein_id(row, where)
            instruction, reference, followup = _first_exchange(row, where)
            choices = row.get("choices")
            if choices is None and "task" not in row and reference.strip().lower() in YES_NO:
                choices = YES_NO
            sample_id = row.get("sample_id") or f"{protein_id}#{seen[protein_id]}"
            seen[protein_id] += 1
            metadata = {"followup": followup} if followup else {}
            samples.append(make_sample(sample_id, row.get("task") or f"sepit_data_{stage}",
                                       self.protein(protein_id), instruction, reference, choices,
                                       metadata, where=where))
        return samples

    def _protein_id(self, row: dict, where: str) -> str:
        protein_id = field(row, "id", str, where, "Each row names its protein by the pdb.h5 group id in 'id'.")
        if protein_id not in self:
            raise DataError(where, f"protein {protein_id!r} is not in pdb.h5 (nor in sequences.csv)",
                            "Add the protein to pdb.h5 or remove this row.")
        return protein_id


def _first_exchange(row: dict, where: str) -> tuple[str, str, list[list[str]]]:
    conversation = field(row, "conversation", list, where,
                         'Give [{"role": "user", ...}, {"role": "assistant", ...}].')
    turns = []
    for turn in conversation:
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str) or "role" not in turn:
            raise DataError(where, f"conversation turn {turn!r} is not a {{'role', 'content'}} object",
                            'Write each turn as {"role": "user"|"assistant", "content": "..."}.')
        turns.append((turn["role"], turn["content"]))
    while turns and turns[0][0] != "user":
        turns.pop(0)  # the official preprocessing drops one leading non-user turn, then asserts alternation
    if len(turns) < 2 or turns[1][0] != "assistant":
        raise DataError(where, "conversation has no user turn followed by an assistant answer",
                        "Each row needs a user question and the assistant's reference answer.")
    followup = [[content for _, content in turns[i:i + 2]] for i in range(2, len(turns), 2)]
    return turns[0][1], turns[1][1], followup


def write_sepit_data(root: str | Path, proteins: Iterable[Protein],
                     instruction_files: Mapping[tuple[str, str], list[InstructionSample]],
                     caption_files: Mapping[str, list[CaptionPair]]) -> None:
    """Write the release layout; rows carry `sample_id`, `task` and `choices` so they load back identically.

    Coordinates are written at full length (the official reader cuts them to 1022 itself), zeros for
    unobserved residues as the official code expects; proteins without structure get all-zero rows.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp, written = root / ".pdb.h5.tmp", set()
    try:
        with h5py.File(tmp, "w") as h5:
            for protein in proteins:
                if "/" in protein.id or protein.id in (".", "..") or protein.id in written:
                    raise DataError(f"protein {protein.id!r}", "cannot be an HDF5 group name (or is written twice)",
                                    "Use unique protein ids without '/'.")
                written.add(protein.id)
                group = h5.create_group(protein.id)
                group.create_dataset("sequence", data=np.array([protein.sequence.encode()]))
                coords = np.zeros((len(protein), 3), np.float32) if protein.coords is None else protein.coords
                group.create_dataset("node_position", data=np.nan_to_num(coords, nan=0.0))
        missing = {s.protein.id for rows in instruction_files.values() for s in rows} - written
        missing |= {p.protein.id for pairs in caption_files.values() for p in pairs} - written
        if missing:
            raise DataError(str(root), f"{len(missing)} sample protein(s) not written, e.g. {sorted(missing)[0]!r}",
                            "Pass every protein that a sample uses.")
        tmp.replace(root / "pdb.h5")
    finally:
        tmp.unlink(missing_ok=True)
    for split, pairs in caption_files.items():
        write_jsonl_atomic(root / "stage0" / f"{split}.jsonl", (
            {"id": p.protein.id, "caption": p.caption, "sample_id": p.id} for p in pairs))
    for (stage, split), samples in instruction_files.items():
        write_jsonl_atomic(root / stage / f"{split}.jsonl", (_conversation_row(s) for s in samples))


def _conversation_row(sample: InstructionSample) -> dict:
    conversation = [{"role": "user", "content": sample.instruction},
                    {"role": "assistant", "content": sample.reference}]
    return {"id": sample.protein.id, "conversation": conversation, "sample_id": sample.id,
            "task": sample.task, "choices": None if sample.choices is None else list(sample.choices)}
