"""The generic JSONL task format for users' own tasks: one self-contained sample per line.

    {"id": "q1", "task": "my_task", "split": "test",
     "protein": {"id": "P69905", "sequence": "MVLSPADK...", "coords": [[x, y, z], null, ...]},
     "instruction": "What is the function of <protein>?",
     "reference": "Involved in oxygen transport.",
     "choices": ["yes", "no"], "metadata": {...}}

`task` defaults to the file name, `split` to "test"; `coords` (C-alpha, null for unobserved residues),
`choices` (closed-set questions; the reference must be one of them) and `metadata` are optional.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sepit.data.errors import DataError, location
from sepit.data.jsonl import field, read_jsonl
from sepit.data.protein import Protein, make_protein
from sepit.data.sample import InstructionSample, make_sample


def read_task_file(path: str | Path, problems: list[DataError] | None = None) -> dict[str, list[InstructionSample]]:
    """{split: samples} from one generic task file; every problem names the file, line and record. The first
    problem is raised; given a `problems` list, each bad line's error goes there and the line is left out."""
    path = Path(path)
    splits: dict[str, list[InstructionSample]] = defaultdict(list)
    first_line: dict[tuple[str, str], int] = {}
    proteins: dict[str, tuple[int, Protein]] = {}
    for line, row in read_jsonl(path, problems):
        try:
            split, sample = _sample(path, line, row, first_line, proteins)
        except DataError as err:
            if problems is None:
                raise
            problems.append(err)
            continue
        splits[split].append(sample)
    return dict(splits)


def _sample(path: Path, line: int, row: dict, first_line: dict[tuple[str, str], int],
            proteins: dict[str, tuple[int, Protein]]) -> tuple[str, InstructionSample]:
    """One record -> (its split, its sample), checked against the ids and proteins seen before it."""
    where = location(path, line, row.get("id"))
    sample_id = field(row, "id", str, where, "Give every sample a unique string 'id'.")
    task = row.get("task") or path.stem
    if (task, sample_id) in first_line:
        raise DataError(where, f"duplicate sample id (first used on line {first_line[task, sample_id]})",
                        "Give every sample of a task its own id.")
    record = field(row, "protein", dict, where,
                   'Every sample needs its protein: "protein": {"id": ..., "sequence": ...}.')
    protein = make_protein(record.get("id"), record.get("sequence"), record.get("coords"), where=f"{where}, protein")
    if protein.id in proteins and proteins[protein.id][1] != protein:
        raise DataError(where, f"protein {protein.id!r} differs from the one defined on line "
                               f"{proteins[protein.id][0]}", "Use one id per distinct sequence and structure.")
    sample = make_sample(sample_id, task, protein, row.get("instruction"), row.get("reference"),
                         row.get("choices"), row.get("metadata"), where=where)
    if "entities" in sample.metadata:  # the grounded metrics' annotations (docs/data.md)
        from sepit.grounding.grounder import check_annotations

        check_annotations(sample.metadata["entities"], where)
    first_line[task, sample_id] = line
    proteins.setdefault(protein.id, (line, protein))
    return str(row.get("split") or "test"), sample
