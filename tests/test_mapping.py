"""Declarative task mappings (`sepit.data.mapping`): the shipped peer formats on rows of the peers' own shape, every
way to map choices and answers, and errors that name the YAML key, the data file, the record and the field.

The peer rows (tests/data/peers/README.md): Evolla's first row is copied from its repository (MIT) and the
Mol-Instructions texts from its README's examples (CC BY 4.0); the OPI, RAPM and Prot2Text rows, and Evolla's other
two, are written by hand in exactly the released shape, since those releases' data licences (non-commercial, or
stated two ways) do not let us copy them into an MIT repository."""

import gzip
import json
from pathlib import Path

import pytest
import yaml

from sepit.commands.data import check, formats
from sepit.data.errors import DataError
from sepit.data.mapping import TaskMapping, shipped_formats
from sepit.tasks import resolve_tasks

PEERS = Path(__file__).parent / "data" / "peers"


def mapping(tmp_path, name="bench", **spec):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def peer(tmp_path, format, data, **extra):
    """A user's two-line mapping onto a shipped format, with the peer's file (tests/data/peers/README.md)."""
    data = {k: str(PEERS / v) for k, v in data.items()} if isinstance(data, dict) else str(PEERS / data)
    return mapping(tmp_path, format, format=format, data=data, **extra)


def test_every_shipped_format_is_listed_and_parses():
    found = formats()
    assert set(found) == {"mol_instructions", "opi", "rapm", "prot2text", "evolla_inputs"} == set(shipped_formats())
    assert all(description for description in found.values())


def test_mol_instructions_reads_the_fenced_sequence_and_the_split_in_metadata(tmp_path):
    task, = resolve_tasks([str(peer(tmp_path, "mol_instructions", "mol_instructions/instructions.json"))])
    splits = task.splits()
    assert {k: [s.id for s in v] for k, v in splits.items()} == {"test": ["1", "4"], "train": ["2", "3"]}
    first = splits["test"][0]
    records = json.loads((PEERS / "mol_instructions/instructions.json").read_text())
    assert first.protein.sequence == records[0]["input"].strip("`\n")
    assert first.instruction == records[0]["instruction"] + "\n<protein>"
    assert first.reference == records[0]["output"] and first.metadata == {"task": "catalytic_activity"}
    assert first.protein.id.startswith("seq-")  # the release names no accession
    assert (task.kind, task.answer_format, task.has_references) == ("open", "free_text", True)


def test_mol_instructions_design_task_is_refused_naming_the_record(tmp_path):
    path = peer(tmp_path, "mol_instructions", "mol_instructions/protein_design.json")
    with pytest.raises(DataError, match=r"mol_instructions.yaml -> protein_design.json, item 1 \(record '1'\): key "
                                        r"'protein.sequence': field 'input' holds no ``` fenced block"):
        resolve_tasks([str(path)])


def test_opi_expands_test_instances_and_takes_the_split_from_each_file(tmp_path):
    path = peer(tmp_path, "opi", {"train": "opi/train.json", "test": "opi/test.jsonl"})
    task, = resolve_tasks([str(path)])
    splits = task.splits()
    assert [s.id for s in splits["train"]] == ["train/1", "train/2"]
    assert [s.id for s in splits["test"]] == ["test/1.1", "test/1.2"]
    seed = json.loads((PEERS / "opi/test.jsonl").read_text().splitlines()[0])
    second = splits["test"][1]
    assert second.protein.sequence == seed["instances"][1]["input"]
    assert second.reference == seed["instances"][1]["output"]
    assert second.instruction == seed["instruction"] + "\n<protein>" and second.metadata == {"name": seed["name"]}


def test_rapm_keeps_its_text_metadata_and_its_split_field(tmp_path):
    task, = resolve_tasks([str(peer(tmp_path, "rapm", "rapm/example_task1.json"))])
    records = json.loads((PEERS / "rapm/example_task1.json").read_text())
    splits = task.splits()
    assert [s.id for s in splits["train"]] == ["1"] and [s.id for s in splits["test"]] == ["2", "3"]
    sample = splits["train"][0]
    assert sample.instruction == records[0]["instruction"] + "<protein>"
    assert sample.reference == records[0]["description"] and sample.metadata == {"annotation": records[0]["metadata"]}
    assert splits["test"][1].protein.sequence == "MKXLAVLGAPR"  # an unknown residue is kept as X
    assert splits["test"][1].metadata == {}  # an empty metadata text is not kept


def test_prot2text_csv_with_quoted_values_and_a_column_name_with_a_space(tmp_path):
    task, = resolve_tasks([str(peer(tmp_path, "prot2text", "prot2text/test.csv"))])
    samples = task.samples("test")
    assert [s.id for s in samples] == ["O00746", "O96720", "P09924"]
    assert samples[0].protein.id == "O00746" and samples[0].instruction == "Describe the function of <protein>."
    assert samples[0].metadata["full_name"] == "Nucleoside diphosphate kinase, mitochondrial"
    assert samples[0].reference.startswith("Catalyzes the reaction: ATP + nucleoside diphosphate")


def test_evolla_inputs_have_no_answers_and_keep_the_3di_string(tmp_path, capsys):
    path = peer(tmp_path, "evolla_inputs", "evolla/inputs.tsv")
    task, = resolve_tasks([str(path)])
    samples = task.samples("test")
    assert (task.has_references, [s.reference for s in samples]) == (False, ["", "", ""])
    first = samples[0]
    assert first.protein.id == "C9RH78" and len(first.metadata["foldseek"]) == len(first.protein.sequence)
    assert first.instruction == "What is the catalytic activity of this protein?\n<protein>"  # JSON quotes decoded
    assert check(path) == {"test": 3}
    assert "no reference answers: predictions only, not scored" in capsys.readouterr().out


MC_CSV = """qid,acc,seq,question,a,b,c,d,answer
q1,P1,MKVLAAG,What does it bind?,DNA,RNA,ATP,heme,B
q2,P2,MKVLAAGW,Where is it?,nucleus,cytoplasm,membrane,,(c)
q3,P3,mkvl aag,Which class?,oxidoreductase,transferase,hydrolase,lyase,d.
"""


def test_multiple_choice_from_columns_with_an_answer_letter(tmp_path):
    (tmp_path / "mc.csv").write_text(MC_CSV)
    path = mapping(tmp_path, "mc", task="post2025", version="2", data="mc.csv", id="qid",
                   protein={"sequence": "seq", "id": "acc"},
                   instruction={"template": "{question} <protein>\nOptions:\n{options}"},
                   reference={"field": "answer", "letter": True}, choices=["a", "b", "c", "d"])
    task, = resolve_tasks([str(path)])
    q1, q2, q3 = task.samples("test")
    assert (task.name, task.kind, task.answer_format) == ("post2025", "closed", "multiple_choice")
    assert task.version.startswith("2/sha256:")
    assert q1.choices == ("DNA", "RNA", "ATP", "heme") and q1.reference == "RNA"
    assert q1.instruction == "What does it bind? <protein>\nOptions:\nA. DNA\nB. RNA\nC. ATP\nD. heme"
    assert q2.choices == ("nucleus", "cytoplasm", "membrane") and q2.reference == "membrane"  # empty cell: 3 options
    assert q3.reference == "lyase" and q3.protein.sequence == "MKVLAAG"  # spaces out, upper-cased


def test_choices_from_a_lettered_object_or_a_list_with_an_option_number(tmp_path):
    rows = [{"q": "Which?", "s": "MKV", "opts": {"B": "two", "A": "one", "C": "three"}, "ans": "C"},
            {"q": "Which?", "s": "MKW", "opts": {"A": "x", "B": "y"}, "ans": "a"}]
    (tmp_path / "obj.json").write_text(json.dumps({"data": {"questions": rows}}))
    path = mapping(tmp_path, "obj", data="obj.json", records="data.questions", protein="s",
                   instruction={"template": "{q}\n<protein>\n{options}"}, choices="opts",
                   reference={"field": "ans", "letter": True})
    first, second = resolve_tasks([str(path)])[0].samples("test")
    assert first.choices == ("one", "two", "three") and first.reference == "three"
    assert second.reference == "x" and first.instruction.endswith("<protein>\nA. one\nB. two\nC. three")
    lines = [{"q": "Which?", "s": "MKV", "opts": ["one", "two"], "ans": 0}, {"q": "Which?", "s": "MKV",
                                                                            "opts": ["a", "b", "c"], "ans": 2}]
    with gzip.open(tmp_path / "list.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in lines))
    path = mapping(tmp_path, "list", data="list.jsonl.gz", protein="s", instruction={"template": "{q} <protein>"},
                   choices="opts", reference={"field": "ans", "index": 0}, split={"value": "test"})
    assert [s.reference for s in resolve_tasks([str(path)])[0].samples("test")] == ["one", "c"]


def test_format_keys_are_overridden_and_protein_parts_merge(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps([{"instruction": "Describe: ", "sequence": "MKV", "description": "d",
                                                  "split": "test", "metadata": "m", "acc": "P9"}]))
    path = mapping(tmp_path, "mine", format="rapm", data="r.json", protein={"id": "acc"}, task="my_rapm")
    sample, = resolve_tasks([str(path)])[0].samples("test")
    assert (sample.task, sample.protein.id, sample.protein.sequence) == ("my_rapm", "P9", "MKV")


def test_version_follows_the_data_and_the_mapping(tmp_path):
    (tmp_path / "mc.csv").write_text(MC_CSV)
    spec = dict(data="mc.csv", protein="seq", instruction={"template": "{question} <protein>"},
                reference={"field": "answer", "letter": True}, choices=["a", "b", "c", "d"])
    first = TaskMapping(mapping(tmp_path, **spec)).version
    assert TaskMapping(mapping(tmp_path, **spec)).version == first
    assert TaskMapping(mapping(tmp_path, **{**spec, "id": "qid"})).version != first
    (tmp_path / "mc.csv").write_text(MC_CSV.replace("heme", "haem"))
    assert TaskMapping(mapping(tmp_path, **spec)).version != first


@pytest.mark.parametrize("spec, message", [
    ({"instruction": "question"}, r"missing key 'data'"),
    ({"data": "mc.csv", "protein": "seq", "instruction": "question", "answer": "x"}, r"unknown key\(s\) answer"),
    ({"data": "none.csv", "protein": "seq", "instruction": "question"}, r"key 'data': data file 'none.csv' not found"),
    ({"data": "mc.csv", "protein": {"sequence": "seq", "chain": "x"}, "instruction": "question"},
     r"key 'protein' has unknown part\(s\) chain"),
    ({"data": "mc.csv", "protein": "seq", "instruction": {"field": "q", "value": "x"}},
     r"key 'instruction' needs exactly one of field, template or value"),
    ({"data": "mc.csv", "protein": {"sequence": {"field": "seq", "regex": "(["}}, "instruction": "question"},
     r"key 'protein.sequence': the regex does not compile"),
    ({"format": "nope", "data": "mc.csv"}, r"unknown format 'nope'.*Shipped formats: .*mol_instructions"),
])
def test_mapping_errors_name_the_yaml_key(tmp_path, spec, message):
    (tmp_path / "mc.csv").write_text(MC_CSV)
    with pytest.raises(DataError, match=message):
        TaskMapping(mapping(tmp_path, **spec))


def test_a_key_written_twice_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("data: a.csv\nprotein: seq\ninstruction: q\nprotein: other\n")
    with pytest.raises(DataError, match=r"twice.yaml, line 4: key 'protein' is written twice"):
        TaskMapping(path)


def test_record_errors_name_the_key_file_record_and_field(tmp_path):
    (tmp_path / "mc.csv").write_text(MC_CSV + "q4,P4,MKV,Odd?,x,y,,,E\nq5,P5,,Empty?,x,y,,,A\nq6,P6,MKV,,x,y,,,A\n"
                                     "q7,P7,MKZJ,Bad?,x,y,,,A\n")
    path = mapping(tmp_path, "mc", data="mc.csv", id="qid", protein="seq",
                   instruction={"template": "{question} <protein>"},
                   reference={"field": "answer", "letter": True}, choices=["a", "b", "c", "d"])
    with pytest.raises(DataError, match=r"mc.yaml -> mc.csv, line 5 \(record 'q4'\): key 'reference': 'E' is not a "
                                        r"letter among 2 options"):
        resolve_tasks([str(path)])
    problems: list[DataError] = []
    TaskMapping(path).splits(problems)
    assert [p.problem for p in problems] == [
        "key 'reference': 'E' is not a letter among 2 options", "key 'protein.sequence': field 'seq' is missing or empty",
        "key 'instruction': the template's field 'question' is missing or empty",
        "key 'protein.sequence' (field 'seq'): unknown residue letter(s) 'J' (first at position 4)"]
    assert str(problems[3]).startswith("mc.yaml -> mc.csv, line 8 (record 'q7'): key 'protein.sequence'")


def test_data_check_lists_every_problem_with_a_cap(tmp_path, capsys):
    rows = "".join(f"q{i},P{i},MKV,Which?,x,y,,,Z\n" for i in range(8))
    (tmp_path / "mc.csv").write_text(MC_CSV + rows)
    path = mapping(tmp_path, "mc", data="mc.csv", id="qid", protein="seq",
                   instruction={"template": "{question} <protein>"},
                   reference={"field": "answer", "letter": True}, choices=["a", "b", "c", "d"])
    with pytest.raises(DataError, match=r"8 problem\(s\) \(the first 5 above\); 3 sample\(s\) read fine"):
        check(path, max_problems=5)
    assert capsys.readouterr().err.count("is not a letter") == 5


def test_tsv_keeps_quotes_and_csv_reads_them(tmp_path):
    (tmp_path / "t.tsv").write_text('P1\tMKV\t"a \\"quoted\\" question"\n')
    path = mapping(tmp_path, "t", data="t.tsv", columns=["id", "seq", "q"], id="id", protein="seq",
                   instruction={"template": "{q} <protein>"}, reference={"value": "x"})
    assert resolve_tasks([str(path)])[0].samples("test")[0].instruction == '"a \\"quoted\\" question" <protein>'
    path = mapping(tmp_path, "t", data="t.tsv", columns=["id", "seq", "q"], json_fields=["q"], id="id",
                   protein="seq", instruction={"template": "{q} <protein>"}, reference={"value": "x"})
    assert resolve_tasks([str(path)])[0].samples("test")[0].instruction == 'a "quoted" question <protein>'


def test_a_sequence_found_by_regex_and_values_translated_by_map(tmp_path):
    (tmp_path / "t.csv").write_text("id,text,label\n1,Seq=<MKVLA> is it soluble?,1\n2,Seq=<mkw>,0\n")
    path = mapping(tmp_path, "t", data="t.csv", id="id", protein={"sequence": {"field": "text", "regex": "Seq=<(\\w+)>"}},
                   instruction={"value": "Is <protein> soluble?"}, reference={"field": "label", "map": {1: "yes", 0: "no"}},
                   choices={"value": ["yes", "no"]})
    first, second = resolve_tasks([str(path)])[0].samples("test")
    assert (first.protein.sequence, first.reference, second.protein.sequence, second.reference) == (
        "MKVLA", "yes", "MKW", "no")
    with pytest.raises(DataError, match=r"key 'reference': map sends 'Y' to True, not text\. Quote the value"):
        TaskMapping(mapping(tmp_path, "t", data="t.csv", protein="text", instruction="text",
                            reference={"field": "label", "map": {"Y": True}}))


def test_answers_written_in_other_letter_and_number_forms(tmp_path):
    answers = ["Answer: B", "(c) ATP", "d", "B. RNA"]
    rows = [{"s": "MKV", "opts": ["DNA", "RNA", "ATP", "heme"], "ans": a} for a in answers]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    path = mapping(tmp_path, "a", data="a.json", protein="s", instruction={"template": "<protein>\n{options}"},
                   choices="opts", reference={"field": "ans", "letter": True})
    assert [s.reference for s in resolve_tasks([str(path)])[0].samples("test")] == ["RNA", "ATP", "heme", "RNA"]
    (tmp_path / "n.csv").write_text("s,a,b,ans\nMKV,x,y,2.0\n")
    path = mapping(tmp_path, "n", data="n.csv", protein="s", instruction={"value": "<protein>?"}, choices=["a", "b"],
                   reference={"field": "ans", "index": 1})
    assert resolve_tasks([str(path)])[0].samples("test")[0].reference == "y"


def test_ids_of_expanded_records_and_of_files_per_split_stay_unique(tmp_path):
    seeds = [{"id": "seed0", "instruction": "EC?", "instances": [{"input": "MKV", "output": "1.1.1.1"},
                                                                 {"input": "MKW", "output": "2.7.1.1"}]}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeds))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeds))
    path = mapping(tmp_path, "opi_ids", format="opi", data={"train": "train.jsonl", "test": "test.jsonl"}, id="id")
    splits = resolve_tasks([str(path)])[0].splits()
    assert [s.id for s in splits["test"]] == ["test/seed0.1", "test/seed0.2"]
    assert [s.id for s in splits["train"]] == ["train/seed0.1", "train/seed0.2"]
    (tmp_path / "empty.jsonl").write_text(json.dumps({**seeds[0], "instances": []}) + "\n")
    with pytest.raises(DataError, match=r"key 'expand': field 'instances' is an empty list"):
        resolve_tasks([str(mapping(tmp_path, "e", format="opi", data="empty.jsonl"))])


def test_an_empty_id_or_a_question_without_options_is_an_error(tmp_path):
    (tmp_path / "mc.csv").write_text(MC_CSV.replace("q2,", ",", 1))
    spec = dict(data="mc.csv", id="qid", protein="seq", instruction={"template": "{question} <protein>"},
                reference={"field": "answer", "letter": True}, choices=["a", "b", "c", "d"])
    with pytest.raises(DataError, match=r"mc.csv, line 3: key 'id': field 'qid' is missing or empty"):
        resolve_tasks([str(mapping(tmp_path, **spec))])
    (tmp_path / "mc.csv").write_text(MC_CSV.replace("nucleus,cytoplasm,membrane,,(c)", ",,,,"))
    with pytest.raises(DataError, match=r"\(record 'q2'\): key 'choices': the record has no options"):
        resolve_tasks([str(mapping(tmp_path, **spec))])


def test_the_version_does_not_depend_on_where_the_file_lies(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "mc.csv").write_text(MC_CSV)
    spec = dict(protein="seq", instruction={"template": "{question} <protein>"}, reference={"field": "answer",
                "letter": True}, choices=["a", "b", "c", "d"])
    here = TaskMapping(mapping(tmp_path / "a", data="mc.csv", description="mine", **spec)).version
    there = TaskMapping(mapping(tmp_path, data=str(tmp_path / "b" / "mc.csv"), **spec)).version
    assert here == there


def test_csv_gzipped_with_a_bom_and_a_long_field_and_bad_text(tmp_path):
    long_answer = "kinase " * 30000
    with gzip.open(tmp_path / "t.csv.gz", "wt", encoding="utf-8") as handle:
        handle.write("\ufeffid,seq,answer\n1,MKV," + long_answer + "\n")
    path = mapping(tmp_path, "t", data="t.csv.gz", id="id", protein="seq", instruction={"value": "<protein>?"},
                   reference="answer")
    assert resolve_tasks([str(path)])[0].samples("test")[0].reference == long_answer  # over csv's 131,072 default
    (tmp_path / "bad.csv").write_bytes("id,seq,answer\n1,MKV,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"bad.csv, after line \d+: not UTF-8 text"):
        resolve_tasks([str(mapping(tmp_path, "bad", data="bad.csv", id="id", protein="seq",
                                   instruction={"value": "<protein>?"}, reference="answer"))])


def test_a_task_name_must_be_a_file_name_and_yaml_merge_keys_work(tmp_path):
    (tmp_path / "mc.csv").write_text(MC_CSV)
    with pytest.raises(DataError, match=r"task name 'peer/ec' is not a file name"):
        TaskMapping(mapping(tmp_path, task="peer/ec", data="mc.csv", protein="seq", instruction="question"))
    path = tmp_path / "merged.yaml"
    path.write_text("common: &common {protein: seq, instruction: {template: '{question} <protein>'}}\n"
                    "data: mc.csv\n<<: *common\nreference: {field: answer, letter: true}\nchoices: [a, b, c, d]\n")
    with pytest.raises(DataError, match=r"unknown key\(s\) common"):  # merged keys arrive; the anchor's own is unknown
        TaskMapping(path)
