"""BLEU, ROUGE and METEOR from per-sample statistics equal nltk, rouge_score and sacrebleu, edge cases included."""

import hashlib
import random
import warnings

import nltk
import numpy as np
import pytest
import sacrebleu
from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
from nltk.translate.meteor_score import meteor_score
from rouge_score.rouge_scorer import RougeScorer

from sepit.metrics import text
from sepit.nltk_data import INSTALL_HINT
from weights import point_weights, resample_weights

# (hypothesis, reference) token lists, each an edge case of nltk's BLEU
EDGE_PAIRS = [
    ("the protein binds atp and catalyzes phosphorylation".split(), "the protein binds atp".split()),
    ("a membrane transporter of sugars .".split(), "a membrane transporter of sugars .".split()),  # identical
    ("kinase".split(), "serine threonine kinase".split()),  # shorter than 2, 3 and 4-grams
    ("a b".split(), "a b c".split()),
    ("a b c".split(), "a b c d e".split()),
    ([], "a nuclear protein".split()),  # empty hypothesis
    ("a nuclear protein".split(), []),  # empty reference
    ([], []),
    ("x y z w".split(), "a b c d".split()),  # no unigram match
    ("a b x c d".split(), "a b y c d".split()),  # unigram and bigram matches, no 3- or 4-gram
    ("the the the the the the".split(), "the cat is on the mat".split()),  # clipping
    ("binds dna binds dna binds dna".split(), "binds dna".split()),  # longer than the reference
]
WEIGHTS = [text.BLEU1, text.BLEU2, text.BLEU3, text.BLEU4, (0.5, 0.5), (0.1, 0.3, 0.5, 0.1), (0.0, 1.0)]


def nltk_bleu(refs, hyps, weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about every order without matches
        return nltk_corpus_bleu([[r] for r in refs], hyps, weights=weights)


def test_word_tokens_lower_case_words_and_punctuation():
    assert text.word_tokens("ATP-binding  Protein (kinase).") == ["atp", "-", "binding", "protein", "(", "kinase",
                                                                    ")", "."]
    assert text.word_tokens("") == []
    assert text.word_tokens.name == "words-v1"
    assert text.make_tokenizer(None) is text.word_tokens


def test_wordpiece_tokens_from_a_local_vocab(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "atp", "-", "bind", "##ing",
                                "protein", "##s", ".", "kinase"]) + "\n")
    tokenizer = text.make_tokenizer(vocab)
    assert isinstance(tokenizer, text.WordPieceTokens)
    assert tokenizer("ATP-binding proteins.") == ["atp", "-", "bind", "##ing", "protein", "##s", "."]
    assert tokenizer("Kinase zzz") == ["kinase", "[UNK]"]
    assert tokenizer.name == "wordpiece:" + hashlib.sha256(vocab.read_bytes()).hexdigest()[:12]


@pytest.mark.parametrize("weights", WEIGHTS)
def test_sentence_bleu_equals_nltk_per_sample(weights):
    hyps, refs = zip(*EDGE_PAIRS)
    stats = text.bleu_statistics(hyps, refs)
    expected = [nltk_bleu([r], [h], weights) for h, r in EDGE_PAIRS]
    # relative, so the ~1e-77 that nltk gives for an order without matches is reproduced too, not just ~0
    np.testing.assert_allclose(text.sentence_bleu(stats, weights), expected, rtol=1e-9, atol=0)
    mean = text.sentence_bleu_mean(stats, point_weights(len(hyps)), weights)
    assert mean.shape == (1,) and mean[0] == pytest.approx(np.mean(expected), abs=1e-9)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_corpus_bleu_equals_nltk_for_the_point_and_each_resample(weights):
    hyps, refs = zip(*EDGE_PAIRS)
    stats = text.bleu_statistics(hyps, refs)
    W = np.vstack([point_weights(len(hyps)), resample_weights(len(hyps), 5, seed=1)])  # (6, n)
    expected = []
    for row in W.astype(int):
        index = np.repeat(np.arange(len(hyps)), row)
        expected.append(nltk_bleu([refs[i] for i in index], [hyps[i] for i in index], weights))
    np.testing.assert_allclose(text.corpus_bleu(stats, W, weights), expected, rtol=1e-9, atol=0)


def test_corpus_bleu_of_a_single_pair_without_unigram_matches_is_zero():
    stats = text.bleu_statistics([["x"]], [["a"]])
    assert text.corpus_bleu(stats, point_weights(1), text.BLEU4)[0] == 0.0


@pytest.mark.parametrize("order", [2, 4])
def test_corpus_bleu_equals_sacrebleu(order):
    # sacrebleu counts a hypothesis shorter than n as 0 n-grams where nltk counts max(1, 0) = 1, so pairs with
    # hypotheses shorter than 4 tokens (and empty ones) are left out; zero-match orders agree within 1e-9
    # (sacrebleu 0, nltk ~1e-77).
    pairs = [(h, r) for h, r in EDGE_PAIRS if len(h) >= 4]
    hyps, refs = zip(*pairs)
    weights = (1 / order,) * order
    stats = text.bleu_statistics(hyps, refs)
    bleu = sacrebleu.BLEU(tokenize="none", smooth_method="none", force=True, max_ngram_order=order)
    expected = bleu.corpus_score([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]]).score / 100
    assert text.corpus_bleu(stats, point_weights(len(hyps)), weights)[0] == pytest.approx(expected, abs=1e-9)
    if order == 4:
        legacy = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]],
                                       tokenize="none", smooth_method="none", force=True).score / 100
        assert legacy == pytest.approx(expected, abs=1e-12)


def test_bleu_rejects_weights_beyond_4_grams():
    stats = text.bleu_statistics([["a"]], [["a"]])
    with pytest.raises(ValueError, match="4-grams"):
        text.sentence_bleu(stats, (0.2,) * 5)


ROUGE_PAIRS = [
    ("The protein binds ATP.", "This protein binds to ATP and GTP."),
    ("Catalyzes the phosphorylation of serine residues", "catalyses phosphorylation of serine/threonine"),
    ("", "A nuclear protein."),
    ("A nuclear protein.", ""),
    ("", ""),
    ("!!! ???", "..."),  # nothing but punctuation: no tokens
    ("Zinc-finger proteins bind DNA; zinc fingers are small.", "Zinc finger protein binding DNA."),
    ("Über-stable café enzymes (EC 3.4.21.4) are running", "the enzyme runs at 37 degrees"),
    ("binding binding binding", "binding"),
    ("a b c d e f g", "g f e d c b a"),
]


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_equals_rouge_score(use_stemmer):
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    predictions, references = zip(*ROUGE_PAIRS)
    stats = text.rouge_statistics(predictions, references, use_stemmer)
    for key in ("rouge1", "rouge2", "rougeL"):
        expected = [scorer.score(target=r, prediction=p)[key].fmeasure for p, r in ROUGE_PAIRS]
        np.testing.assert_allclose(stats[key], expected, rtol=0, atol=1e-9, err_msg=key)


def test_rouge_tokens_stem_only_words_over_three_characters():
    assert text.rouge_tokens("Binding proteins, was bus!", use_stemmer=True) == ["bind", "protein", "was", "bus"]
    assert text.rouge_tokens("Binding proteins", use_stemmer=False) == ["binding", "proteins"]


def test_lcs_length_equals_dynamic_programming():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = (table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1]
                               else max(table[i - 1][j], table[i][j - 1]))
        assert text.lcs_length(a, b) == table[-1][-1]


def test_meteor_uses_wordnet_synonyms():
    hyp, ref = text.word_tokens("the cat sat on the rug"), text.word_tokens("the cat sat on the carpet")
    # 0.998 with WordNet ("rug" and "carpet" are synonyms), 0.830 without
    assert text.meteor_statistics([hyp], [ref])[0] == pytest.approx(0.9976851851851852, abs=1e-12)


def test_meteor_equals_nltk():
    hyps, refs = zip(*EDGE_PAIRS)
    expected = [meteor_score([r], h) for h, r in EDGE_PAIRS]
    np.testing.assert_allclose(text.meteor_statistics(hyps, refs), expected, rtol=0, atol=1e-12)


def test_meteor_without_wordnet_is_an_error_not_a_lower_score(monkeypatch, tmp_path):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])  # restored after the test; WordNet stays loaded
    with pytest.raises(text.MetricError, match="METEOR: needs the WordNet") as err:
        text.meteor_statistics([["a"]], [["a"]])
    assert INSTALL_HINT in str(err.value)
