import numpy as np
import pytest

from sepit.data import ESM2_WINDOW, DataError, Protein, crop_to_window, make_protein


def test_sequence_is_upper_cased_and_extra_letters_are_accepted():
    protein = make_protein("p1", " mkXbZuO \n")
    assert protein.sequence == "MKXBZUO"
    assert protein.coords is None
    assert not protein.observed.any()


def test_unknown_residue_letter_names_record_letter_and_position():
    with pytest.raises(DataError) as err:
        make_protein("p1", "MKJ1A", where="proteins.jsonl, line 7 (record 'p1')")
    message = str(err.value)
    assert message.startswith("proteins.jsonl, line 7 (record 'p1'): unknown residue letter(s) '1', 'J'")
    assert "first at position 3" in message
    assert "20 standard one-letter codes or X, B, Z, U, O" in message


def test_empty_sequence_is_rejected():
    with pytest.raises(DataError, match=r"protein 'p1': empty sequence\. Remove the record"):
        make_protein("p1", "   ")


def test_coordinates_of_another_length_are_rejected():
    with pytest.raises(DataError, match=r"2 coordinate rows for a sequence of 3 residues\. Give one C-alpha"):
        make_protein("p1", "MKV", [[0, 0, 1], [1, 2, 3]])


def test_malformed_coordinate_rows_are_rejected():
    with pytest.raises(DataError, match=r"coordinates are not a list of \[x, y, z\] rows"):
        make_protein("p1", "MK", [[0, 0], [1, 2, 3]])


def test_null_and_non_finite_coordinates_become_unobserved_not_errors():
    protein = make_protein("p1", "MKVL", [[1, 2, 3], None, [float("nan"), 0, 0], [float("inf"), 1, 1]])
    assert protein.observed.tolist() == [True, False, False, False]
    assert np.isnan(protein.coords[1:]).all()
    assert protein.coords.dtype == np.float32 and protein.coords.shape == (4, 3)


def test_equality_compares_coordinates_with_nan_as_equal():
    a = make_protein("p1", "MK", [[1, 2, 3], None])
    assert a == make_protein("p1", "MK", [[1, 2, 3], [np.nan] * 3])
    assert a != make_protein("p1", "MK", [[1, 2, 4], None])
    assert a != make_protein("p1", "MK")


def test_crop_keeps_the_first_window_residues_with_their_coordinates():
    length = ESM2_WINDOW + 30
    coords = np.arange(length * 3, dtype=np.float32).reshape(length, 3)
    protein = make_protein("long", "A" * (length - 1) + "W", coords)
    cropped = crop_to_window(protein)
    assert len(cropped) == ESM2_WINDOW == len(cropped.coords)
    assert cropped.sequence == protein.sequence[:ESM2_WINDOW]
    np.testing.assert_array_equal(cropped.coords, coords[:ESM2_WINDOW])
    assert crop_to_window(make_protein("short", "MKV")) == Protein("short", "MKV")
    assert len(crop_to_window(protein, window=10)) == 10


def test_non_ascii_letters_are_rejected_before_upper_casing():
    with pytest.raises(DataError, match=r"non-ASCII letter 'ß' at position 4 of the sequence"):
        make_protein("p1", "mkvß")  # 'ß'.upper() == 'SS' would shift every residue after it


def test_coordinates_must_be_a_list_and_are_read_only():
    with pytest.raises(DataError, match="coordinates must be a list of \\[x, y, z\\] rows, got int"):
        make_protein("p1", "MK", 5)
    protein = make_protein("p1", "MK", [[1, 2, 3], None])
    with pytest.raises(ValueError, match="read-only"):
        protein.coords[0, 0] = 9.0
