"""The shipped metric profiles equal nltk / rouge_score / sacrebleu computed directly, on the 0-100 scale."""

import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sacrebleu
from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import meteor_score
from rouge_score.rouge_scorer import RougeScorer

from sepit.metrics import text
from sepit.metrics.profiles import CORPUS_V1, SEPIT_V1, MetricProfile
from sepit.registry import METRICS
from weights import point_weights, resample_weights

# (prediction, reference)
PAIRS = [
    ("This protein is a serine/threonine kinase that phosphorylates histone H3.",
     "Serine/threonine-protein kinase that phosphorylates histone H3 at Ser-10 during mitosis."),
    ("", "Catalyzes the hydrolysis of ATP coupled with the transport of calcium."),  # empty prediction
    ("Component of the 40S ribosomal subunit.", "Component of the 40S ribosomal subunit."),  # identical
    ("Transporter.", "Sodium-dependent glucose transporter of the intestinal brush border."),  # one word
    ("BINDS ZINC; Involved In DNA Repair!!", "binds zinc and is involved in DNA repair."),  # casing, punctuation
    ("Probable membrane protein (By similarity).", "Integral membrane protein of unknown function."),
    ("Acts as a transcriptional repressor of genes involved in the heat shock response, binding DNA.",
     "Transcriptional repressor that binds DNA."),
    ("Plays a role in the regulation of apoptosis.", "Regulates mitochondrial apoptosis by binding BCL2."),
]
PREDICTIONS, REFERENCES = [p for p, _ in PAIRS], [r for _, r in PAIRS]


def nltk_bleu(refs, hyps, weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about every order without matches
        return corpus_bleu([[r] for r in refs], hyps, weights=weights)


def rouge_references(predictions, references, use_stemmer):
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    scores = [scorer.score(target=r, prediction=p) for p, r in zip(predictions, references)]
    return {key: 100 * np.mean([s[key].fmeasure for s in scores]) for key in ("rouge1", "rouge2", "rougeL")}


def point(profile, predictions, references):
    stats = profile.open_statistics(predictions, references)
    return {name: values[0] for name, values in profile.open_metrics(stats, point_weights(len(predictions))).items()}


def test_sepit_v1_equals_nltk_and_rouge_score():
    hyps, refs = [text.word_tokens(p) for p in PREDICTIONS], [text.word_tokens(r) for r in REFERENCES]
    expected = {name: 100 * np.mean([nltk_bleu([r], [h], weights) for h, r in zip(hyps, refs)])
                for name, weights in [("bleu1", (1, 0, 0, 0)), ("bleu2", (0.5, 0.5, 0, 0)),
                                      ("bleu3", (0.33, 0.33, 0.33, 0)), ("bleu4", (0.25,) * 4)]}
    expected |= rouge_references(PREDICTIONS, REFERENCES, use_stemmer=True)
    expected["meteor"] = 100 * np.mean([meteor_score([r], h) for h, r in zip(hyps, refs)])
    metrics = point(SEPIT_V1, PREDICTIONS, REFERENCES)
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-9), name


def test_corpus_v1_equals_nltk_rouge_score_and_sacrebleu():
    hyps, refs = [text.word_tokens(p) for p in PREDICTIONS], [text.word_tokens(r) for r in REFERENCES]
    expected = {"corpus_bleu2": 100 * nltk_bleu(refs, hyps, (0.5, 0.5)),
                "corpus_bleu4": 100 * nltk_bleu(refs, hyps, (0.25,) * 4)}
    expected |= rouge_references(PREDICTIONS, REFERENCES, use_stemmer=False)
    expected["meteor"] = 100 * np.mean([meteor_score([r], h) for h, r in zip(hyps, refs)])
    metrics = point(CORPUS_V1, PREDICTIONS, REFERENCES)
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-9), name
    # sacrebleu counts no n-grams for a hypothesis shorter than n, nltk counts max(1, 0): without the empty and
    # the one-word prediction both agree
    kept = [i for i, h in enumerate(hyps) if len(h) >= 4]
    assert len(kept) == len(PAIRS) - 2
    sub = point(CORPUS_V1, [PREDICTIONS[i] for i in kept], [REFERENCES[i] for i in kept])
    for name, order in (("corpus_bleu2", 2), ("corpus_bleu4", 4)):
        bleu = sacrebleu.BLEU(tokenize="none", smooth_method="none", force=True, max_ngram_order=order)
        score = bleu.corpus_score([" ".join(hyps[i]) for i in kept], [[" ".join(refs[i]) for i in kept]]).score
        assert sub[name] == pytest.approx(score, abs=1e-7), name  # both on 0-100: 1e-9 on the 0-1 scale


@pytest.mark.parametrize("profile", [SEPIT_V1, CORPUS_V1], ids=lambda p: p.name)
def test_a_bootstrap_row_equals_scoring_the_resampled_pairs(profile):
    stats = profile.open_statistics(PREDICTIONS, REFERENCES)
    W = resample_weights(len(PAIRS), 3, seed=7)
    metrics = profile.open_metrics(stats, W)
    for b, row in enumerate(W):
        index = np.repeat(np.arange(len(PAIRS)), row)
        again = point(profile, [PREDICTIONS[i] for i in index], [REFERENCES[i] for i in index])
        for name, value in again.items():
            assert metrics[name][b] == pytest.approx(value, abs=1e-9), name


def test_per_sample_values_average_to_the_metrics():
    stats = SEPIT_V1.open_statistics(PREDICTIONS, REFERENCES)
    per_sample = SEPIT_V1.per_sample(stats)
    metrics = point(SEPIT_V1, PREDICTIONS, REFERENCES)
    assert per_sample.keys() == metrics.keys()
    for name, values in per_sample.items():
        assert values.shape == (len(PAIRS),) and values.mean() == pytest.approx(metrics[name], abs=1e-9)
    assert per_sample["bleu4"][2] == pytest.approx(100) and per_sample["rougeL"][1] == 0
    corpus = CORPUS_V1.per_sample(CORPUS_V1.open_statistics(PREDICTIONS, REFERENCES))
    assert set(corpus) == {"rouge1", "rouge2", "rougeL", "meteor"}  # corpus BLEU has no per-sample value


def test_random_pairs_equal_nltk_and_rouge_score():
    rng = random.Random(0)
    vocab = ["binds", "binding", "atp", "the", "a", "kinase", "kinases", "of", "dna", "zinc", ".", ",", "Protein"]
    pairs = [(" ".join(rng.choices(vocab, k=rng.randint(0, 12))), " ".join(rng.choices(vocab, k=rng.randint(0, 12))))
             for _ in range(300)]
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    hyps, refs = [text.word_tokens(p) for p in predictions], [text.word_tokens(r) for r in references]
    for profile, stemmer in ((SEPIT_V1, True), (CORPUS_V1, False)):
        stats = profile.open_statistics(predictions, references)
        metrics = {name: values[0] for name, values in profile.open_metrics(stats, point_weights(300)).items()}
        for name, weights in profile.bleu:
            expected = (100 * nltk_bleu(refs, hyps, weights) if profile.bleu_kind == "corpus" else
                        100 * np.mean([nltk_bleu([r], [h], weights) for h, r in zip(hyps, refs)]))
            assert metrics[name] == pytest.approx(expected, abs=1e-9), name
        for name, value in rouge_references(predictions, references, stemmer).items():
            assert metrics[name] == pytest.approx(value, abs=1e-9), name


def test_closed_metrics_on_the_0_100_scale():
    gold, pred = np.array([0, 1, 1, 0]), np.array([0, 1, -1, 1])  # F1: class 0 2/3, class 1 2/4
    metrics = SEPIT_V1.closed_metrics(gold, pred, 2, point_weights(4))
    assert {k: v[0] for k, v in metrics.items()} == pytest.approx(
        {"accuracy": 50.0, "macro_f1": 100 * (2 / 3 + 2 / 4) / 2, "extraction_failure_rate": 25.0})


def test_meteor_profiles_refuse_to_score_without_wordnet(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(text.MetricError, match="WordNet"):
        SEPIT_V1.open_statistics(PREDICTIONS, REFERENCES)


def test_profiles_are_registered_and_named():
    assert METRICS.get("sepit_v1") is SEPIT_V1 and METRICS.get("corpus_v1") is CORPUS_V1
    assert (SEPIT_V1.name, SEPIT_V1.version, CORPUS_V1.name, CORPUS_V1.version) == ("sepit_v1", "1", "corpus_v1", "1")
    with pytest.raises(ValueError, match="bleu_kind"):
        MetricProfile("x", "1", "", (), "macro", rouge_stemmer=False)


def test_scoring_modules_import_no_heavy_framework():
    heavy = ("torch", "lightning", "transformers", "sklearn", "nltk")
    code = ("import sys, sepit.metrics.profiles, sepit.metrics.bootstrap, sepit.metrics.closed; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # nltk loads on the first open-ended score, not for closed-set tasks
