import pytest

from sepit.data import DataError, make_protein, make_sample
from sepit.data.jsonl import read_jsonl, write_jsonl_atomic

PROTEIN = make_protein("p1", "MKV")


def test_instruction_without_placeholder_is_rejected_with_an_example_fix():
    with pytest.raises(DataError, match=r"s1'?: instruction is missing the <protein> placeholder.*"
                                        r"Put exactly one <protein> where the protein goes"):
        make_sample("s1", "t", PROTEIN, "What does it do?", "Binds DNA.", where="s1")


def test_two_placeholders_are_rejected():
    with pytest.raises(DataError, match="2 <protein> placeholders"):
        make_sample("s1", "t", PROTEIN, "Compare <protein> and <protein>.", "Same.")


def test_wrapped_placeholder_of_the_official_code_is_normalised():
    sample = make_sample("s1", "t", PROTEIN, "Explain the function of <bop><protein><eop>.", "Binds DNA.")
    assert sample.instruction == "Explain the function of <protein>."
    assert sample.kind == "open"


def test_closed_set_reference_must_be_one_of_the_choices():
    sample = make_sample("s1", "t", PROTEIN, "Is <protein> soluble?", "Yes", ["yes", "no"])
    assert sample.kind == "closed" and sample.choices == ("yes", "no")
    with pytest.raises(DataError, match=r"reference 'maybe' is not one of the choices \['yes', 'no'\]"):
        make_sample("s1", "t", PROTEIN, "Is <protein> soluble?", "maybe", ["yes", "no"])
    with pytest.raises(DataError, match="duplicate choices"):
        make_sample("s1", "t", PROTEIN, "Is <protein> soluble?", "yes", ["yes", "Yes"])


def test_empty_reference_is_rejected():
    with pytest.raises(DataError, match="empty or missing reference answer"):
        make_sample("s1", "t", PROTEIN, "What is <protein>?", "  ")


def test_malformed_json_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,\n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    with pytest.raises(DataError) as err:
        next(rows)
    assert str(err.value).startswith(f"{path}, line 3: malformed JSON (Expecting property name")
    assert "Each line must hold exactly one JSON object" in str(err.value)


def test_non_object_json_line_is_rejected(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"line 1: expected a JSON object, got list"):
        list(read_jsonl(path))


def test_atomic_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "out" / "rows.jsonl"
    write_jsonl_atomic(path, [{"a": 1}, {"b": "é"}])
    assert [row for _, row in read_jsonl(path)] == [{"a": 1}, {"b": "é"}]
    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, ({"c": i} if i < 1 else (_ for _ in ()).throw(RuntimeError()) for i in range(3)))
    assert [row for _, row in read_jsonl(path)] == [{"a": 1}, {"b": "é"}]  # the old file survives a failure
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]  # no temporary file left behind


def test_choices_and_metadata_types():
    with pytest.raises(DataError, match="choices must be a list of strings, got str"):
        make_sample("s1", "t", PROTEIN, "Is <protein> soluble?", "yes", "yes")
    with pytest.raises(DataError, match="metadata must be an object, got list"):
        make_sample("s1", "t", PROTEIN, "Is <protein> soluble?", "yes", metadata=[1])


def test_non_utf8_line_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(DataError, match=r"line 2: not UTF-8 text \(invalid start byte at byte 7\)"):
        list(read_jsonl(path))


def test_choices_beyond_the_option_letters_are_refused():
    from sepit.data.sample import OPTION_LETTERS, check_choices
    from sepit.metrics.extraction import multiple_choice

    many = [f"option {i}" for i in range(len(OPTION_LETTERS) + 1)]
    with pytest.raises(DataError, match="at most 26 can be named by a letter"):
        check_choices(many, "option 0", "here")
    letters = [f"kind {i}" for i in range(len(OPTION_LETTERS))]
    assert multiple_choice("The answer is (Z).", letters) == "kind 25"  # the last letter is read
