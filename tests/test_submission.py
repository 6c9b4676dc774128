"""`sepit leaderboard validate|add`: each defect of a submission is named with its file and line, all at once;
a correct submission is re-scored to exactly what `sepit score` gives; archives cannot write outside."""

import io
import json
import re
import shutil
import tarfile
import zipfile

import pytest

from sepit_leaderboard.cli import add, validate
from sepit.cli import main
from sepit.data.errors import DataError
from sepit.tasks import get_task, sample_hash

TASKS = ("sp14_membrane", "sp14_catalytic_activity")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A correct submission of two SP14 tasks, with the results.json `sepit score` wrote for its predictions."""
    folder = tmp_path_factory.mktemp("submission") / "good"
    (folder / "predictions").mkdir(parents=True)
    meta = {"schema_version": 1, "name": "Echo 1", "description": "answers yes, or its first option",
            "modality": "text-only", "params_total": 0, "params_active": 0, "training_data": "none",
            "contact": "bench@example.org", "licence": "CC-BY-4.0", "tasks": {}}
    for name in TASKS:
        task = get_task(name)
        samples = task.samples("test")
        rows = [{"task": name, "id": s.id, "reference": s.reference, "kind": s.kind,
                 "choices": list(s.choices) if s.choices else None,
                 "prediction": "yes" if s.kind == "closed" else f"This enzyme catalyzes {s.id}."} for s in samples]
        (folder / "predictions" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        meta["tasks"][name] = {"version": task.version, "dataset_hash": sample_hash(samples)}
    (folder / "submission.json").write_text(json.dumps(meta))
    main(["score", "--predictions", str(folder / "predictions"), "--output", str(folder / "results.json"),
          "--scoring.leakage", "false"])
    shutil.rmtree(folder / "samples")
    return folder


def _variant(good, tmp_path, edit_rows=None, edit_meta=None, edit_claims=None):
    folder = shutil.copytree(good, tmp_path / "variant")
    for name, edit, path in (("rows", edit_rows, folder / "predictions" / "sp14_membrane.jsonl"),
                             ("meta", edit_meta, folder / "submission.json"),
                             ("claims", edit_claims, folder / "results.json")):
        if edit is None:
            continue
        if name == "rows":
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            edit(rows)
            path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
        else:
            document = json.loads(path.read_text())
            edit(document)
            path.write_text(json.dumps(document))
    return folder


def _problems(folder) -> str:
    with pytest.raises(DataError) as caught:
        validate(folder)
    return str(caught.value)


def test_a_correct_submission_is_rescored_to_what_sepit_score_gives(good):
    rescored = validate(good)
    claimed = json.loads((good / "results.json").read_text())["tasks"]
    assert set(rescored) == set(TASKS)
    for name in TASKS:
        assert rescored[name]["metrics"] == claimed[name]["metrics"]
        assert rescored[name]["ci"] == claimed[name]["ci"]
        assert rescored[name]["complete"] is True


@pytest.mark.parametrize("defect, edit, expected", [
    ("missing", lambda rows: rows.pop(10),
     r"task 'sp14_membrane': 1 of 72 samples have no prediction: '\w+'"),
    ("duplicate", lambda rows: rows.append(rows[5]),
     (r"sp14_membrane.jsonl, line 73: sample '\w+' of task 'sp14_membrane' appears again \(first at "
      r"predictions/sp14_membrane.jsonl, line 6\)")),
    ("extra", lambda rows: rows.append({**rows[0], "id": "NOT_A_PROTEIN"}),
     r"sp14_membrane.jsonl, line 73: sample id 'NOT_A_PROTEIN' is not in task 'sp14_membrane'"),
    ("empty", lambda rows: rows[3].update(prediction="  "),
     r"sp14_membrane.jsonl, line 4: sample '\w+' of task 'sp14_membrane' has an empty prediction"),
    ("not a string", lambda rows: rows[4].update(prediction=["yes"]),
     r"sp14_membrane.jsonl, line 5: field 'prediction' must be a string, got list"),
    ("bad json", lambda rows: rows.insert(2, "{not json\n"), r"sp14_membrane.jsonl, line 3: malformed JSON"),
    ("no reference", lambda rows: rows[2].pop("reference"),
     r"sp14_membrane.jsonl, line 3: missing field 'reference'"),
    ("wrong reference", lambda rows: rows[0].update(reference="maybe", choices=["maybe", "no"]),
     r"line 1: sample '\w+' of task 'sp14_membrane' does not match the task: its reference 'maybe'"),
])
def test_each_row_defect_is_named_with_its_line(good, tmp_path, defect, edit, expected):
    message = _problems(_variant(good, tmp_path, edit_rows=edit))
    assert "1 problem(s)" in message, message
    assert re.search(expected, message), message


def test_wrong_task_version_and_dataset_hash(good, tmp_path):
    def edit(meta):
        meta["tasks"]["sp14_membrane"]["version"] = "0.9"
        meta["tasks"]["sp14_catalytic_activity"]["dataset_hash"] = "0" * 64

    message = _problems(_variant(good, tmp_path, edit_meta=edit))
    version = get_task("sp14_membrane").version
    assert f"submission.json: task 'sp14_membrane' was predicted for version '0.9', but the registered task is " \
           f"version '{version}'" in message
    assert "task 'sp14_catalytic_activity' dataset_hash '000" in message and "2 problem(s)" in message


def test_a_tampered_claimed_score_is_refused(good, tmp_path):
    true = json.loads((good / "results.json").read_text())["tasks"]["sp14_membrane"]["metrics"]["accuracy"]

    def edit(claims):
        claims["tasks"]["sp14_membrane"]["metrics"]["accuracy"] = true + 0.5

    message = _problems(_variant(good, tmp_path, edit_claims=edit))
    assert f"results.json: task 'sp14_membrane' claims accuracy = {true + 0.5!r}, but its predictions score " \
           f"{true:.4f}" in message


def test_claims_of_model_based_metrics_are_left_unchecked(good, tmp_path):
    """A judge's or BERTScore's numbers need a model the check does not run: not refused, and not trusted either
    (the board shows them only under their own labels)."""

    def edit(claims):
        claims["tasks"]["sp14_membrane"]["metrics"].update(judge_score=71.0, bertscore_f1=88.0)

    validate(_variant(good, tmp_path, edit_claims=edit))  # no DataError


def test_every_problem_is_listed_at_once(good, tmp_path):
    def rows_edit(rows):
        rows[3]["prediction"] = ""
        rows.append(rows[5])
        rows.append({**rows[0], "id": "X1"})

    def meta_edit(meta):
        meta["contact"] = ""
        meta["modality"] = "telepathy"

    message = _problems(_variant(good, tmp_path, edit_rows=rows_edit, edit_meta=meta_edit))
    assert "5 problem(s)" in message
    for part in ("line 4", "line 73", "line 74", "'contact' must be a non-empty string", "modality must be one of"):
        assert part in message


def test_the_command_takes_the_submission_as_its_argument(good, tmp_path, capsys):
    main(["leaderboard", "validate", str(good)])
    assert "valid; 211 predictions of 2 task(s) re-scored with sepit_v1" in capsys.readouterr().out
    broken = _variant(good, tmp_path, edit_rows=lambda rows: rows.pop())
    with pytest.raises(SystemExit) as exit_:
        main(["leaderboard", "validate", str(broken)])
    assert exit_.value.code == 1
    assert "1 of 72 samples have no prediction" in capsys.readouterr().err


def test_archives_are_unpacked_as_data(good, tmp_path):
    packed = tmp_path / "good.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(good, arcname="good")
    assert set(validate(packed)) == set(TASKS)
    zipped = tmp_path / "good.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for path in good.rglob("*"):
            zf.write(path, path.relative_to(good))
    assert set(validate(zipped)) == set(TASKS)

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("predictions/link.jsonl")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match=r"'../escaped.txt' \(escapes the folder\); 'predictions/link.jsonl' "
                                        r"\(not a regular file\)"):
        validate(evil)
    assert not (tmp_path / "escaped.txt").exists()
    absolute = tmp_path / "evil.zip"
    with zipfile.ZipFile(absolute, "w") as zf:
        zf.writestr("/tmp/absolute.txt", "x")
    with pytest.raises(DataError, match="escapes the folder"):
        validate(absolute)

    from sepit_leaderboard.archive import unpack  # the size cap in force is the one reported
    for archive in (packed, zipped):
        with pytest.raises(DataError, match="unpacks to more than 100 bytes"):
            unpack(archive, tmp_path / f"capped-{archive.suffix}", max_bytes=100)


@pytest.mark.slow  # the leakage report's identity search
def test_add_places_the_rescored_submission_on_the_board(good, tmp_path, capsys):
    results, board = tmp_path / "results", tmp_path / "board"
    target = add(good, results, board=board)
    assert target == results / "echo-1"
    document = json.loads((target / "results.json").read_text())
    claimed = json.loads((good / "results.json").read_text())["tasks"]
    assert {t: r["metrics"] for t, r in document["tasks"].items()} == {t: claimed[t]["metrics"] for t in TASKS}
    assert document["model"]["name"] == "Echo 1" and document["model"]["modality"] == "text-only"
    assert "leakage" in document["tasks"]["sp14_membrane"]  # added with the leakage report, for the slices
    assert (target / "submission" / "claimed-results.json").is_file()
    assert not (target / "submission" / "results.json").exists()  # the board reads only re-scored numbers
    assert "| 1 | Echo 1 |" in (board / "leaderboard.md").read_text()
    with pytest.raises(DataError, match="already holds a submission named 'Echo 1'.*--replace"):
        add(good, results)
    assert add(good, results, replace=True) == target

