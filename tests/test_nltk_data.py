"""The offline NLTK data that `make test` builds gives nltk's own reference numbers."""

from nltk.tokenize import sent_tokenize
from nltk.translate.meteor_score import meteor_score


def test_wordnet_synonyms_reach_meteor():
    # nltk's METEOR doctest pair
    hypothesis = ("It is a guide to action which ensures that the military always obeys the commands of the "
                  "party").split()
    reference = ("It is a guide to action that ensures that the military will forever heed Party "
                 "commands").split()
    assert round(meteor_score([reference], hypothesis), 4) == 0.6944
    # 0.830 without WordNet: "carpet" and "rug" only match as synonyms
    assert round(meteor_score(["the cat sat on the rug".split()], "the cat sat on the carpet".split()), 3) == 0.998


def test_punkt_splits_sentences_around_abbreviations():
    assert sent_tokenize("Dr. Smith binds ATP. It is a kinase.") == ["Dr. Smith binds ATP.", "It is a kinase."]
