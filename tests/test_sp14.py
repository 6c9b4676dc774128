"""The bundled SP14 suite: registered, deterministic, split-clean, checked against its manifest."""

import dataclasses
import shutil
from collections import Counter

import pytest

from sepit_benchmarks.sp14 import HERE, suite
from sepit_benchmarks.sp14.builders import load
from sepit.data import DataError
from sepit.tasks import all_tasks, get_task, sample_hash, suites

EXPECTED = {  # (train, valid, test); a change here means a new task version
    "sp14_function": (3414, 432, 439), "sp14_process": (3656, 468, 480),
    "sp14_catalytic_activity": (1043, 135, 139), "sp14_location": (3153, 389, 394),
    "sp14_caption": (3906, 494, 512), "sp14_localization": (958, 102, 111), "sp14_membrane": (579, 66, 72),
    "sp14_enzyme_class": (1029, 135, 136), "sp14_go_cc": (6290, 776, 788),
}


def test_suite_is_registered_through_its_entry_point():
    assert "sp14" in suites()
    tasks = all_tasks()
    assert set(EXPECTED) <= set(tasks)
    kinds = Counter(tasks[name].kind for name in EXPECTED)
    assert kinds == {"open": 5, "closed": 4}


@pytest.mark.parametrize("name", EXPECTED)
def test_counts_splits_and_no_protein_in_two_splits(name):
    splits = get_task(name).splits()
    assert tuple(len(splits[s]) for s in ("train", "valid", "test")) == EXPECTED[name]
    proteins = {split: {s.protein.id for s in samples} for split, samples in splits.items()}
    assert not proteins["train"] & proteins["test"]
    assert not proteins["train"] & proteins["valid"]
    assert not proteins["valid"] & proteins["test"]
    ids = [s.id for samples in splits.values() for s in samples]
    assert len(ids) == len(set(ids))


def test_closed_set_tasks_have_their_answer_formats():
    tasks = all_tasks()
    localization = tasks["sp14_localization"].samples("test")
    assert all(len(s.choices) == 10 and s.reference in s.choices for s in localization)
    assert "J. peroxisome" in localization[0].instruction
    enzyme = tasks["sp14_enzyme_class"].samples("train")
    assert len(enzyme[0].choices) == 7
    assert Counter(s.reference for s in enzyme)["Translocases (EC 7)"] == 0  # ENZYME 2001 predates class 7
    go_cc = tasks["sp14_go_cc"].samples("test")
    assert Counter(s.reference for s in go_cc) == {"yes": 394, "no": 394}  # balanced by construction
    assert {s.choices for s in go_cc} == {("yes", "no")}
    membrane = tasks["sp14_membrane"]
    assert membrane.answer_format == "yes_no"
    assert all(s.instruction.endswith("Answer yes or no.") for s in membrane.samples("valid"))


def test_no_question_about_a_go_term_uses_a_term_of_the_protein():
    data = load()
    terms = {r.protein.id: set(r.row["go"]["cc"]) for r in data.records}
    for sample in get_task("sp14_go_cc").samples("train"):
        term = sample.metadata["go_term"]
        assert (term in terms[sample.protein.id]) == (sample.reference == "yes")


def test_references_follow_the_templates():
    caption = {s.id: s for s in get_task("sp14_caption").samples("test")}["A1T8L1"]
    assert caption.reference.startswith("This protein is Phosphoglycerate kinase from Mycobacterium vanbaalenii")
    assert "It enables phosphoglycerate kinase activity" in caption.reference
    function = {s.id: s for s in get_task("sp14_function").samples("test")}["A1T8L1"]
    assert "Phosphoglycerate kinase activity: Catalysis of the reaction" in function.reference
    assert function.instruction.count("<protein>") == 1
    structured = [s for s in get_task("sp14_caption").samples("test") if s.protein.coords is not None]
    assert len(structured) == 22


def test_building_is_deterministic():
    task = get_task("sp14_go_cc")
    first = sample_hash(task.samples("test"))
    fresh = suite.__wrapped__().task("sp14_go_cc")  # a new Task object: nothing cached is reused
    assert sample_hash(fresh.samples("test")) == first


def test_a_modified_data_file_fails_against_the_manifest(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(HERE / "data", data)
    with open(data / "go_terms.jsonl", "a") as handle:
        handle.write("\n")
    task = dataclasses.replace(get_task("sp14_function"), manifest=data / "MANIFEST.sha256")
    with pytest.raises(DataError) as err:
        task.samples("test")
    assert str(err.value).startswith(f"{data / 'go_terms.jsonl'}: does not match its manifest (sha256 ")
    assert "bump the task version and run `sepit data manifest`" in str(err.value)
