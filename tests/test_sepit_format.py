"""The official SEPIT-Data layout, written here by hand exactly as the release stores it."""

import json

import h5py
import numpy as np
import pytest

from sepit.data import DataError, make_protein
from sepit.data.sepit_format import SepitData, write_sepit_data
from sepit.data.sample import CaptionPair, make_sample

LONG = "M" + "A" * 1099  # 1100 residues: the release cuts its node_position to 1022 rows


def write_release(root, rows=None):
    """pdb.h5 + stage0/1/2 files as in the release: sequence = array holding one bytes string."""
    root.mkdir(exist_ok=True)
    with h5py.File(root / "pdb.h5", "w") as h5:
        for pid, seq, coords in [
            ("Q59650", "MKTAY", np.array([[1, 2, 3], [0, 0, 0], [4, 5, 6], [7, 8, 9], [1, 1, 1]], "f4")),
            ("P00001", LONG, np.tile(np.array([[1, 2, 3]], "f4"), (1022, 1))),
            ("NOSTRUCT", "MKV", np.zeros((3, 3), "f4")),
        ]:
            group = h5.create_group(pid)
            group.create_dataset("sequence", data=np.array([seq.encode()]))
            group.create_dataset("node_position", data=coords)
    lines = {
        "stage0/train.jsonl": [{"id": "Q59650", "caption": "A kinase."}, {"id": "P00001", "caption": "Long."}],
        "stage1/train.jsonl": [conversation("Q59650", "Describe <protein>.", "A kinase.")],
        "stage2/qa_test.jsonl": rows if rows is not None else [
            conversation("Q59650", "Explain the function of <protein>.", "Transfers phosphate."),
            conversation("Q59650", "Is <protein> an enzyme?", "Yes"),
            conversation("P00001", "What is <protein>?", "A long protein.",
                         [{"role": "user", "content": "And?"}, {"role": "assistant", "content": "Nothing."}]),
        ],
    }
    for name, content in lines.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in content))
    return root


def conversation(pid, question, answer, more=()):
    return {"id": pid, "conversation": [{"role": "user", "content": question},
                                        {"role": "assistant", "content": answer}, *more]}


def test_release_layout_loads_as_released(tmp_path):
    data = SepitData(write_release(tmp_path / "db"))
    samples = data.samples("stage2", "qa_test")
    assert [s.id for s in samples] == ["Q59650#0", "Q59650#1", "P00001#0"]
    assert [s.kind for s in samples] == ["open", "closed", "open"]  # a yes/no answer is closed-set
    assert samples[1].choices == ("yes", "no")
    assert samples[2].metadata["followup"] == [["And?", "Nothing."]]
    kinase = samples[0].protein
    assert kinase.sequence == "MKTAY"
    assert kinase.observed.tolist() == [True, False, True, True, True]  # (0, 0, 0) marks a missing residue
    long = data.protein("P00001")
    assert len(long) == 1100 and long.observed.sum() == 1022 and not long.observed[1022:].any()
    assert data.protein("NOSTRUCT").coords is None
    assert [(p.id, p.caption) for p in data.caption_pairs()] == [("Q59650#0", "A kinase."), ("P00001#0", "Long.")]
    assert set(data.files()) == {("stage0", "train"), ("stage1", "train"), ("stage2", "qa_test")}


def test_row_naming_a_protein_missing_from_pdb_h5(tmp_path):
    root = write_release(tmp_path / "db", [conversation("Q59650", "What is <protein>?", "A."),
                                           conversation("MISSING", "What is <protein>?", "B.")])
    with pytest.raises(DataError) as err:
        SepitData(root).samples("stage2", "qa_test")
    assert str(err.value) == (f"{root / 'stage2' / 'qa_test.jsonl'}, line 2 (record 'MISSING'): protein 'MISSING' "
                              "is not in pdb.h5 (nor in sequences.csv). Add the protein to pdb.h5 or remove this row.")


def test_sequences_csv_supplies_proteins_missing_from_pdb_h5(tmp_path):
    root = write_release(tmp_path / "db", [conversation("EXTRA", "What is <protein>?", "A.")])
    (root / "sequences.csv").write_text("id,sequence\nEXTRA,mkvl\n")
    [sample] = SepitData(root).samples("stage2", "qa_test")
    assert sample.protein.sequence == "MKVL" and sample.protein.coords is None


def test_missing_placeholder_names_file_and_line(tmp_path):
    root = write_release(tmp_path / "db", [conversation("Q59650", "What is this protein?", "A.")])
    with pytest.raises(DataError, match=r"qa_test.jsonl, line 1 \(record 'Q59650'\): instruction is missing the "
                                        r"<protein> placeholder"):
        SepitData(root).samples("stage2", "qa_test")


def test_malformed_json_and_broken_conversations(tmp_path):
    root = write_release(tmp_path / "db")
    (root / "stage2" / "qa_test.jsonl").write_text(json.dumps(conversation("Q59650", "<protein>?", "A.")) + "\n{oops\n")
    with pytest.raises(DataError, match=r"qa_test.jsonl, line 2: malformed JSON"):
        SepitData(root).samples("stage2", "qa_test")
    (root / "stage2" / "qa_test.jsonl").write_text(json.dumps({"id": "Q59650", "conversation": [
        {"role": "user", "content": "What is <protein>?"}]}) + "\n")
    with pytest.raises(DataError, match="no user turn followed by an assistant answer"):
        SepitData(root).samples("stage2", "qa_test")


def test_bad_protein_groups(tmp_path):
    root = write_release(tmp_path / "db")
    with h5py.File(root / "pdb.h5", "a") as h5:
        h5.create_group("BADLEN").create_dataset("sequence", data=np.array([b"MKV"]))
        h5["BADLEN"].create_dataset("node_position", data=np.ones((2, 3), "f4"))
        h5.create_group("BADRES").create_dataset("sequence", data=np.array([b"MK*"]))
        h5["BADRES"].create_dataset("node_position", data=np.ones((3, 3), "f4"))
        h5.create_group("NOPOS").create_dataset("sequence", data=np.array([b"MKV"]))
        h5.create_group("NANPOS").create_dataset("sequence", data=np.array([b"MKV"]))
        h5["NANPOS"].create_dataset("node_position", data=np.array([[1, 2, 3], [np.nan, 1, 1], [np.inf] * 3], "f4"))
    data = SepitData(root)
    with pytest.raises(DataError, match=r"group 'BADLEN'\): 2 coordinate rows for a sequence of 3 residues"):
        data.protein("BADLEN")
    with pytest.raises(DataError, match=r"group 'BADRES'\): unknown residue letter\(s\) '\*'"):
        data.protein("BADRES")
    with pytest.raises(DataError, match=r"group 'NOPOS'\): missing dataset 'node_position'"):
        data.protein("NOPOS")
    assert data.protein("NANPOS").observed.tolist() == [True, False, False]


def test_missing_folder_and_file_say_what_is_there(tmp_path):
    with pytest.raises(DataError, match="pdb.h5 not found. Point to a SEPIT-Data folder"):
        SepitData(tmp_path)
    root = write_release(tmp_path / "db")
    with pytest.raises(DataError, match=r"stage1/qa_test.jsonl: file not found\. Instruction files present: "
                                        r"stage0/train, stage1/train, stage2/qa_test"):
        SepitData(root).samples("stage1", "qa_test")


def test_writer_round_trip_keeps_ids_tasks_choices_and_coordinates(tmp_path):
    kinase = make_protein("Q59650", "MKTAY", [[1, 2, 3], None, [4, 5, 6], [7, 8, 9], [1, 1, 1]])
    plain = make_protein("P2", "MKV")
    samples = [make_sample("a", "t_open", kinase, "What is <protein>?", "A kinase."),
               make_sample("b", "t_closed", plain, "Is <protein> soluble?", "no", ["yes", "no"]),
               make_sample("c", "t_open", plain, "What is <protein>?", "yes")]  # open, despite the answer
    write_sepit_data(tmp_path, [kinase, plain], {("stage2", "qa_test"): samples},
                     {"train": [CaptionPair("a", kinase, "A kinase.")]})
    data = SepitData(tmp_path)
    loaded = data.samples("stage2", "qa_test")
    assert loaded == samples
    assert [s.kind for s in loaded] == ["open", "closed", "open"]
    assert data.caption_pairs() == [CaptionPair("a", kinase, "A kinase.")]
    with h5py.File(tmp_path / "pdb.h5") as h5:  # what the official reader sees
        assert h5["Q59650"]["sequence"][()][0].decode() == "MKTAY"
        assert h5["Q59650"]["node_position"][()][1].tolist() == [0, 0, 0]


def test_odd_sequence_datasets_and_files(tmp_path):
    root = write_release(tmp_path / "db")
    with h5py.File(root / "pdb.h5", "a") as h5:
        h5.create_group("PERRES").create_dataset("sequence", data=np.array([b"M", b"K"]))
        h5["PERRES"].create_dataset("node_position", data=np.ones((2, 3), "f4"))
    with pytest.raises(DataError, match=r"`sequence` holds 2 value\(s\).*Store the whole sequence as one string"):
        SepitData(root).protein("PERRES")
    (root / "sequences.csv").write_text("id,name,seq\nE,kinase,MKV\n")
    with pytest.raises(DataError, match=r"sequences.csv: columns \['id', 'name', 'seq'\] lack 'id' and 'sequence'"):
        SepitData(root).protein("E")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "pdb.h5").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        SepitData(tmp_path / "bad").protein("X")


def test_writer_refuses_ids_that_are_not_group_names_and_leaves_no_debris(tmp_path):
    with pytest.raises(DataError, match=r"protein '1abc/A': cannot be an HDF5 group name"):
        write_sepit_data(tmp_path, [make_protein("1abc/A", "MKV")], {}, {})
    assert list(tmp_path.iterdir()) == []
