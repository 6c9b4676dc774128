"""`sepit data ...` called in-process, as the console script calls it."""

import json
import re

import pytest

from sepit.cli import bare_flags, main
from sepit.data.sepit_format import SepitData
from sepit.tasks import get_task


def test_data_info_json_lists_every_task_with_split_counts(capsys):
    main(["data", "info", "--json"])
    card = json.loads(capsys.readouterr().out)["suites"]["sp14"]
    kinds = [t["kind"] for t in card["tasks"].values()]
    assert kinds.count("open") >= 4 and kinds.count("closed") >= 4
    assert card["tasks"]["sp14_membrane"]["counts"] == {"train": 579, "valid": 66, "test": 72}
    assert card["proteins"] == {"train": 3906, "valid": 494, "test": 512}
    assert card["proteins_in_two_splits"] == {"train/valid": [], "train/test": [], "valid/test": []}
    assert set(card["tasks"]["sp14_function"]["files"]) == {"proteins.jsonl", "structures.jsonl", "go_terms.jsonl"}
    assert "UniProt data CC BY 4.0" in card["licences"]


def test_data_info_table(capsys):
    main(["data", "info"])
    out = capsys.readouterr().out
    assert "sp14_go_cc               closed    yes_no           1.0/1.0  6290   776    788" in out
    assert "accessions in two splits: 0" in out


def test_bare_flag_spelling():
    assert bare_flags(["data", "info", "--json"]) == ["data", "info", "--json=true"]
    assert bare_flags(["--json", "false"]) == ["--json", "false"]


def test_unknown_suite_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["data", "info", "--suite", "nope"])
    assert exit.value.code == 1
    assert capsys.readouterr().err == "sepit: error: sepit data info: unknown suite 'nope'. Known suites: sp14.\n"


@pytest.mark.slow
def test_export_to_sepit_layout_loads_back_identical_samples(tmp_path, capsys):
    main(["data", "export", "--format", "sepit", "--output", str(tmp_path)])
    data = SepitData(tmp_path)
    assert set(data.files()) == {("stage0", "train"), *((s, p) for s in ("stage1", "stage2")
                                                         for p in ("train", "valid", "qa_test"))}
    names = ["sp14_function", "sp14_process", "sp14_catalytic_activity", "sp14_location", "sp14_caption",
             "sp14_localization", "sp14_membrane", "sp14_enzyme_class", "sp14_go_cc"]
    for ours, split in (("test", "qa_test"), ("train", "train")):
        expected = [s for name in names for s in get_task(name).samples(ours)]
        loaded = data.samples("stage2", split)
        assert loaded == expected  # ids, tasks, proteins with coordinates, instructions, references, choices
    assert data.samples("stage1", "qa_test") == get_task("sp14_caption").samples("test")
    pairs = data.caption_pairs("train")
    assert len(pairs) == 3906 and pairs[0].caption == get_task("sp14_caption").samples("train")[0].reference
    main(["data", "check", "--path", str(tmp_path)])
    assert "stage2/qa_test 3071" in capsys.readouterr().out


def test_check_reports_missing_and_empty_files(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "check", "--path", str(tmp_path / "nope.jsonl")])
    assert "No such file or directory" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SystemExit):
        main(["data", "check", "--path", str(tmp_path / "empty.jsonl")])
    assert capsys.readouterr().err == f"sepit: error: {tmp_path / 'empty.jsonl'}: holds no samples. Check that this is the file or folder you meant.\n"


def test_check_lists_every_bad_line_of_a_task_file_up_to_the_cap(tmp_path, capsys):
    good = {"id": "s0", "protein": {"id": "p0", "sequence": "MKV"}, "instruction": "What is <protein>?",
            "reference": "an enzyme"}
    lines = [json.dumps(good)]
    for i in range(1, 8):  # seven bad lines of four kinds, then good ones after them
        bad = [dict(good, id=f"s{i}", protein={"id": f"p{i}", "sequence": "MK1"}), "{not json",
               dict(good, id="s0"), dict(good, id=f"s{i}", instruction="no placeholder")][i % 4]
        lines.append(bad if isinstance(bad, str) else json.dumps(bad))
    lines += [json.dumps(dict(good, id="s9", protein={"id": "p9", "sequence": "MKVL"}))]
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit):
        main(["data", "check", "--path", str(path), "--max_problems", "5"])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and [re.search(r", line (\d+)", line)[1] for line in err[:5]] == ["2", "3", "4", "5", "6"]
    assert "malformed JSON" in err[0] and "duplicate sample id" in err[1] and "<protein>" in err[2]
    assert "residue" in err[3]
    assert err[-1].startswith(f"sepit: error: {path}: 7 problem(s) (the first 5 above); 2 sample(s) read fine")


def test_predict_points_at_bench(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--config", "configs/sepit/tiny/stage2.yaml"])
    assert "sepit bench --model" in capsys.readouterr().err
