"""The generic JSONL task format for users' own tasks: one self-contained sample per line.

    {"id": "q1", "task": "my_task", "split": "test",
     "protein": {"id": "P69905", "sequence": "MVLSPADK...", "coords": [[x, y, z], null, ...]},
     "instruction": "What is the function of <protein>?",
     "reference": "Involved in oxygen transport.",
     "choices": ["yes", "no"], "metadata": {...}}

`task` defaults to the file name, `split` to "test"; `coords` (C-alpha, null for unobserved residues),
`choices` (closed-set questions; the reference must be one of them) and `metadata` are optional.
A declarative task mapping (`sepit.data.mapping`) turns other files into records of this shape and checks them
with the same `RecordChecker`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sepit.data.errors import DataError, location, raise_or_collect
from sepit.data.jsonl import field, read_jsonl
from sepit.data.protein import Protein, make_protein
from sepit.data.sample import InstructionSample, make_sample


def read_task_file(path: str | Path, problems: list[DataError] | None = None) -> dict[str, list[InstructionSample]]:
    """{split: samples} from one generic task file; every problem names the file, line and record. The first
    problem is raised; given a `problems` list, each bad line's error goes there and the line is left out."""
    path = Path(path)
    splits: dict[str, list[InstructionSample]] = defaultdict(list)
    checker = RecordChecker(default_task=path.stem)
    for line, row in read_jsonl(path, problems):
        try:
            split, sample = checker.sample(row, location(path, line, row.get("id")), f"line {line}")
        except DataError as err:
            raise_or_collect(err, problems)
            continue
        splits[split].append(sample)
    return dict(splits)


class RecordChecker:
    """Turns generic records into samples, one at a time, checking each against the records before it: a sample
    id is used once per task, a protein id names one sequence and structure. `references=False` reads a file
    without answers (predictions only)."""

    def __init__(self, default_task: str, references: bool = True):
        self.default_task, self.references = default_task, references
        self.first_seen: dict[tuple[str, str], str] = {}  # (task, sample id) -> where it was first used
        self.proteins: dict[str, tuple[str, Protein]] = {}  # protein id -> (where first defined, protein)

    def sample(self, row: dict, where: str, place: str) -> tuple[str, InstructionSample]:
        """One record -> (its split, its sample). `where` names the record in errors, `place` its position
        ("line 12") in a later record's error."""
        sample_id = field(row, "id", str, where, "Give every sample a unique string 'id'.")
        task = row.get("task") or self.default_task
        if (task, sample_id) in self.first_seen:
            raise DataError(where, f"duplicate sample id (first used on {self.first_seen[task, sample_id]})",
                            "Give every sample of a task its own id.")
        record = field(row, "protein", dict, where,
                       'Every sample needs its protein: "protein": {"id": ..., "sequence": ...}.')
        protein = make_protein(record.get("id"), record.get("sequence"), record.get("coords"),
                               where=f"{where}, protein")
        if protein.id in self.proteins and self.proteins[protein.id][1] != protein:
            raise DataError(where, f"protein {protein.id!r} differs from the one defined on "
                                   f"{self.proteins[protein.id][0]}", "Use one id per distinct sequence and structure.")
        sample = make_sample(sample_id, task, protein, row.get("instruction"), row.get("reference"),
                             row.get("choices"), row.get("metadata"), where=where,
                             reference_required=self.references)
        if "entities" in sample.metadata:  # the grounded metrics' annotations (docs/data.md)
            from sepit.grounding.grounder import check_annotations

            check_annotations(sample.metadata["entities"], where)
        self.first_seen[task, sample_id] = place
        self.proteins.setdefault(protein.id, (place, protein))
        return str(row.get("split") or "test"), sample
