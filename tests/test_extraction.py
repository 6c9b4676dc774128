import pytest

from sepit.metrics.extraction import last_option_text, last_yes_no, multiple_choice

PLACES = ["nucleus", "cytoplasm", "extracellular space", "membrane", "cell membrane"]


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"),
    ("No, it is not.", "no"),
    ("Yes. On reflection, no.", "no"),            # the last one counts, as in the official code
    ("It is not known; answer: YES", "yes"),
    ("The protein is noted in the yeast nucleus.", None),  # 'noted', 'yeast' are not yes/no
    ("", None),
])
def test_last_yes_no(text, expected):
    assert last_yes_no(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("B", "cytoplasm"),
    ("(C)", "extracellular space"),
    ("The answer is A.", "nucleus"),
    ("Answer: D", "membrane"),
    ("option e", None),                            # lower-case letters are words, not options
    ("A. nucleus", "nucleus"),
    ("It localizes to the cytoplasm.", "cytoplasm"),
    ("A kinase that moves from the nucleus to the cytoplasm", "cytoplasm"),  # 'A' starts a sentence
    ("It sits in the cell membrane.", "cell membrane"),   # not also 'membrane'
    ("Not the membrane but the cell membrane", "cell membrane"),
    ("Nuclear.", None),
    ("B) cytoplasm, or maybe (A)", "nucleus"),
])
def test_multiple_choice(text, expected):
    assert multiple_choice(text, PLACES) == expected


@pytest.mark.parametrize("text, expected", [
    ("B", None),                                   # letters are not read by the last-match rule
    ("Not the nucleus; the cytoplasm.", "cytoplasm"),
    ("It sits in the cell membrane.", "cell membrane"),
    ("Answer: D", None),
])
def test_last_option_text(text, expected):
    assert last_option_text(text, PLACES) == expected
