"""`sepit data ...`: the benchmark card, export to the SEPIT-Data layout, checking files, manifests."""

from __future__ import annotations

import sys
from collections import defaultdict
from json import dumps
from pathlib import Path
from typing import Literal

from sepit.data.errors import DataError
from sepit.data.manifest import write_manifest
from sepit.tasks import SPLITS, Task, TaskSuite, sample_hash, suites

# Our splits in the official layout: the release has train and qa_test; valid is an extra file.
SEPIT_SPLIT_NAMES = {"train": "train", "valid": "valid", "test": "qa_test"}


def benchmark_card(suite: TaskSuite) -> dict:
    """Counts per task and split, proteins per split and their overlap, sources, licences, file hashes."""
    tasks, proteins_by_split = {}, defaultdict(set)
    for task in suite.tasks:
        files = task.verify()
        splits = task.splits()
        for split, samples in splits.items():
            proteins_by_split[split].update(s.protein.id for s in samples)
        tasks[task.name] = {
            "kind": task.kind, "answer_format": task.answer_format, "version": task.version,
            "metric_profile": task.metric_profile, "description": task.description,
            "counts": {split: len(splits.get(split, [])) for split in SPLITS},
            "proteins": {split: len({s.protein.id for s in splits.get(split, [])}) for split in SPLITS},
            "with_structure": {split: sum(s.protein.coords is not None for s in splits.get(split, []))
                               for split in SPLITS},
            "files": files,
            "dataset_hash": {split: sample_hash(samples) for split, samples in splits.items()},
        }
    overlap = {f"{a}/{b}": sorted(proteins_by_split[a] & proteins_by_split[b])
               for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:]}
    stages = {"stage0_caption_pairs": {s: len(suite.caption_pairs(s)) for s in SPLITS},
              "stage1_captions": tasks[suite.caption_task]["counts"] if suite.caption_task else {},
              "stage2_instructions": {s: sum(t["counts"][s] for t in tasks.values()) for s in SPLITS}}
    return {"name": suite.name, "version": suite.version, "description": suite.description,
            "sources": list(suite.sources), "licences": list(suite.licences),
            "proteins": {split: len(proteins_by_split[split]) for split in SPLITS},
            "proteins_in_two_splits": overlap, "training_sets": stages, "tasks": tasks}


def render_card(card: dict) -> str:
    header = ["task", "kind", "answers", "version", *SPLITS, "with structure (test)"]
    rows = [[name, t["kind"], t["answer_format"], t["version"], *(str(t["counts"][s]) for s in SPLITS),
             str(t["with_structure"]["test"])] for name, t in card["tasks"].items()]
    rows += [[stage, "training", "", "", *(str(counts.get(s, "")) for s in SPLITS), ""]
             for stage, counts in card["training_sets"].items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    shared = sum(len(v) for v in card["proteins_in_two_splits"].values())
    return "\n".join([
        f"{card['name']} v{card['version']}: {card['description']}", "",
        line(header), line(["-" * w for w in widths]), *map(line, rows), "",
        "proteins per split: " + ", ".join(f"{s} {n}" for s, n in card["proteins"].items())
        + f"; accessions in two splits: {shared}",
        "sources:", *(f"  - {s}" for s in card["sources"]),
        "licences:", *(f"  - {s}" for s in card["licences"]),
    ])


def info(suite: str | None = None, json: bool = False) -> dict:
    """Print the benchmark card of every registered task suite (or one), as a table or JSON.

    Args:
        suite: only this suite.
        json: print JSON for machines instead of the table.
    """
    found = suites()
    if suite is not None and suite not in found:
        raise DataError("sepit data info", f"unknown suite {suite!r}", f"Known suites: {', '.join(found)}.")
    cards = {name: benchmark_card(s) for name, s in found.items() if suite in (None, name)}
    print(dumps({"suites": cards}, indent=2) if json else "\n\n".join(map(render_card, cards.values())))
    return cards


def export(output: Path, format: Literal["sepit"] = "sepit", suite: str = "sp14") -> Path:
    """Write a task suite in the official SEPIT-Data layout (pdb.h5 + stage0/1/2 JSONL files).

    Args:
        output: folder to write.
        format: the layout; "sepit" is the official SEPIT-Data release layout.
        suite: the registered task suite to export.
    """
    from sepit.data.sepit_format import write_sepit_data

    found = suites()
    if suite not in found:
        raise DataError("sepit data export", f"unknown suite {suite!r}", f"Known suites: {', '.join(found)}.")
    chosen = found[suite]
    splits = {task.name: task.splits() for task in chosen.tasks}
    proteins = {s.protein.id: s.protein for by_split in splits.values() for samples in by_split.values()
                for s in samples}
    instruction_files = {}
    for split, name in SEPIT_SPLIT_NAMES.items():
        if chosen.caption_task:
            instruction_files["stage1", name] = splits[chosen.caption_task].get(split, [])
        instruction_files["stage2", name] = [s for by_split in splits.values() for s in by_split.get(split, [])]
    captions = {"train": chosen.caption_pairs("train")} if chosen.caption_task else {}
    write_sepit_data(output, [proteins[k] for k in sorted(proteins)], instruction_files, captions)
    print(f"wrote {len(proteins)} proteins and {sum(map(len, instruction_files.values()))} instruction rows "
          f"to {output}")
    return Path(output)


def check(path: Path, max_problems: int = 50) -> dict:
    """Load a generic task file (.jsonl), a YAML task mapping or a SEPIT-Data folder and report its counts. In a
    task file or mapping every bad record is reported (the first `max_problems` printed, all counted); in a
    folder, the first problem.

    Args:
        path: a generic task JSONL file, a YAML task mapping (docs/data.md), or a SEPIT-Data folder (with pdb.h5).
        max_problems: how many of a task file's problems to print.
    """
    path = Path(path)
    note = ""
    if path.is_dir():
        from sepit.data.sepit_format import SepitData

        data = SepitData(path)
        counts = {f"{stage}/{split}": len(data.caption_pairs(split) if stage == "stage0" else data.samples(stage, split))
                  for stage, split in data.files()}
    else:
        problems: list[DataError] = []
        if path.suffix in (".yaml", ".yml"):
            from sepit.data.mapping import TaskMapping

            mapping = TaskMapping(path)
            splits = mapping.splits(problems)
            note = f"; task {mapping.name!r}, version {mapping.version}"
            if not mapping.has_references:
                note += "; no reference answers: predictions only, not scored"
        else:
            from sepit.data.generic import read_task_file

            splits = read_task_file(path, problems)
        counts = {split: len(samples) for split, samples in splits.items()}
        if len(problems) == 1:
            raise problems[0]  # one problem is its own one-line message
        if problems:
            for problem in problems[:max_problems]:
                print(problem, file=sys.stderr)
            more = f" (the first {max_problems} above)" if len(problems) > max_problems else " (above)"
            raise DataError(str(path), f"{len(problems)} problem(s){more}; "
                            f"{sum(counts.values())} sample(s) read fine", "Fix them and check again.")
    if not sum(counts.values()):
        raise DataError(str(path), "holds no samples", "Check that this is the file or folder you meant.")
    print(f"{path}: OK, " + ", ".join(f"{k} {v}" for k, v in counts.items()) + note)
    return counts


def formats() -> dict[str, str]:
    """List the shipped task mappings of peers' released formats: `format: NAME` in your mapping starts from
    one (docs/data.md, "Task mappings")."""
    from sepit.data.mapping import shipped_formats

    found = shipped_formats()
    width = max(map(len, found), default=0)
    print("\n".join(f"{name.ljust(width)}  {description}" for name, description in found.items()))
    return found


def manifest(folder: Path) -> Path:
    """Write folder/MANIFEST.sha256 for every file in the folder (after an intended data change).

    Args:
        folder: the data folder of a task suite.
    """
    folder = Path(folder)
    target = folder / "MANIFEST.sha256"
    write_manifest(target, [p for p in folder.iterdir() if p.is_file() and p != target and not p.name.startswith(".")])
    print(f"wrote {target}")
    return target
