import json

import pytest

from sepit.data import DataError
from sepit.data.generic import read_task_file


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def row(sample_id="q1", **extra):
    base = {"id": sample_id, "protein": {"id": "P1", "sequence": "MKVL", "coords": [[0, 0, 1], None, [1, 1, 1], [2, 2, 2]]},
            "instruction": "What does <protein> do?", "reference": "It binds DNA."}
    return {**base, **extra}


def test_generic_file_reads_splits_tasks_and_choices(tmp_path):
    path = write(tmp_path / "my_task.jsonl", [
        row("q1"), row("q2", split="train"),
        row("q3", task="other", instruction="Is <protein> soluble?", reference="yes", choices=["yes", "no"])])
    splits = read_task_file(path)
    assert {k: [s.id for s in v] for k, v in splits.items()} == {"test": ["q1", "q3"], "train": ["q2"]}
    q1, q3 = splits["test"]
    assert (q1.task, q1.kind, q3.task, q3.kind) == ("my_task", "open", "other", "closed")
    assert q1.protein.observed.tolist() == [True, False, True, True]


def test_sample_without_protein(tmp_path):
    bad = row("q2")
    del bad["protein"]
    path = write(tmp_path / "t.jsonl", [row("q1"), bad])
    with pytest.raises(DataError, match=r"t.jsonl, line 2 \(record 'q2'\): missing field 'protein'\. Every sample "
                                        r"needs its protein"):
        read_task_file(path)


def test_bad_protein_inside_a_sample_names_the_line(tmp_path):
    path = write(tmp_path / "t.jsonl", [row("q1", protein={"id": "P1", "sequence": ""})])
    with pytest.raises(DataError, match=r"t.jsonl, line 1 \(record 'q1'\), protein: empty sequence"):
        read_task_file(path)
    path = write(tmp_path / "t.jsonl", [row("q1", protein={"id": "P1", "sequence": "MK", "coords": [[1, 2, 3]]})])
    with pytest.raises(DataError, match=r"line 1 \(record 'q1'\), protein: 1 coordinate rows for a sequence of 2"):
        read_task_file(path)


def test_duplicate_ids_and_missing_placeholder(tmp_path):
    path = write(tmp_path / "t.jsonl", [row("q1"), row("q1")])
    with pytest.raises(DataError, match=r"line 2 \(record 'q1'\): duplicate sample id \(first used on line 1\)"):
        read_task_file(path)
    path = write(tmp_path / "t.jsonl", [row("q1", instruction="What does it do?")])
    with pytest.raises(DataError, match="instruction is missing the <protein> placeholder"):
        read_task_file(path)


def test_malformed_line(tmp_path):
    path = write(tmp_path / "t.jsonl", [row("q1"), '{"id": "q2", ]'])
    with pytest.raises(DataError, match=r"t.jsonl, line 2: malformed JSON"):
        read_task_file(path)


def test_one_protein_id_with_two_sequences_is_rejected(tmp_path):
    other = row("q2", protein={"id": "P1", "sequence": "MKVVVV"})
    path = write(tmp_path / "t.jsonl", [row("q1"), row("q3"), other])
    with pytest.raises(DataError, match=r"line 3 \(record 'q2'\): protein 'P1' differs from the one defined on line 1"):
        read_task_file(path)


def test_entity_annotations_are_checked_with_their_line(tmp_path):
    good = row("q1", metadata={"entities": {"go": ["GO:0003677"], "location": ["Nucleus"]}})
    bad = row("q2", metadata={"entities": {"go": ["GO:9999999"]}})
    assert read_task_file(write(tmp_path / "ok.jsonl", [good]))["test"][0].metadata["entities"]["go"] == ["GO:0003677"]
    with pytest.raises(DataError, match=r"t.jsonl, line 2 \(record 'q2'\): 'GO:9999999' is not a GO id"):
        read_task_file(write(tmp_path / "t.jsonl", [good, bad]))
