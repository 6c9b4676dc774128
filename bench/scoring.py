"""`sepit score`'s open-ended scoring (profile sepit_v1) vs the same metrics computed naively, per sample.

The engine path is `score_rows`, the function behind `sepit score` and `sepit bench`, with no bootstrap
(`n_resamples=0`) and no leakage report: point estimates only, which is all the naive path computes. The
naive path is what one writes from the reference packages, one pair at a time: nltk `sentence_bleu` for
BLEU-1..4 (sepit_v1's weights, no smoothing), rouge_score's `RougeScorer` for ROUGE-1/2/L F with the Porter
stemmer, nltk `meteor_score`. rouge_score rather than torchmetrics' `ROUGEScore`: it is the implementation
sepit_v1 is specified against, and the faster of the two per sample, so it does not flatter the ratio. Both
paths count BLEU and METEOR over the same tokens (sepit's `word_tokens`, the default tokenizer).

The pairs are synthetic protein descriptions from a seeded generator: exact copies, edited copies, unrelated
answers and empty answers, so the edge cases of each metric are in the mix.

The second table times the grounded metrics (entity F1, GO hF1, EC levels, location accuracy) on top of
sepit_v1 in the same process: the same `score_rows` with `--scoring.entities off` (sepit_v1 alone) and `auto`,
the grounder built inside the timing as in a fresh `sepit score`. It runs on the synthetic pairs and on pairs of
real SP14 references (each prediction another reference, edited as above so that few texts repeat and the
grounding cache does not flatter the time).

    .venv/bin/python bench/scoring.py [--pairs 100000]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.common` from `python bench/...`

from bench.common import describe, machine, save_json, table
from sepit.metrics.text import BLEU1, BLEU2, BLEU3, BLEU4

SUBJECTS = ["This protein", "The enzyme", "A membrane transporter", "The kinase", "This transcription factor",
            "The receptor", "A zinc-finger protein", "The ATP-binding subunit", "This chaperone", "The protease"]
VERBS = ["catalyzes", "binds", "regulates", "transports", "hydrolyzes", "phosphorylates", "is involved in",
         "participates in", "is required for", "mediates", "inhibits", "stabilizes"]
OBJECTS = ["the hydrolysis of ATP", "DNA", "transcription of target genes", "sodium ions across the membrane",
           "the first step of glycolysis", "ribosomal RNA", "the assembly of the cytoskeleton",
           "iron-sulfur clusters", "signal transduction", "fatty acid beta-oxidation", "protein folding",
           "the degradation of misfolded proteins", "heme biosynthesis", "GTP", "copper ions", "mRNA splicing"]
QUALIFIERS = ["in the nucleus", "in the mitochondrial matrix", "at the plasma membrane", "during cell division",
              "in response to oxidative stress", "with high affinity", "(EC 3.6.1.3)", "(EC 2.7.11.1)",
              "in a calcium-dependent manner", "as part of a heterodimer", "", ""]
WORDS = sorted({w for phrase in SUBJECTS + VERBS + OBJECTS + QUALIFIERS for w in phrase.split()})
BLEU = (("bleu1", BLEU1), ("bleu2", BLEU2), ("bleu3", BLEU3), ("bleu4", BLEU4))  # sepit_v1's n-gram weights
METRICS = [name for name, _ in BLEU] + ["rouge1", "rouge2", "rougeL", "meteor"]


def description(rng: random.Random) -> str:
    sentences = [" ".join(filter(None, [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                                        rng.choice(QUALIFIERS)])) + "." for _ in range(rng.randint(1, 3))]
    return " ".join(sentences)


def edited(text: str, rng: random.Random) -> str:
    """A model-like near miss: words dropped, replaced or repeated."""
    out = []
    for word in text.split():
        roll = rng.random()
        if roll < 0.1:
            continue
        out.append(rng.choice(WORDS) if roll < 0.25 else word)
        if roll > 0.97:
            out.append(word)
    return " ".join(out)


def synthetic_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prediction, reference) pairs: 5 % empty, 10 % exact, 45 % edited, 40 % unrelated answers."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        reference, roll = description(rng), rng.random()
        prediction = "" if roll < 0.05 else reference if roll < 0.15 else \
            edited(reference, rng) if roll < 0.6 else description(rng)
        pairs.append((prediction, reference))
    return pairs


def sp14_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prediction, reference) pairs of real SP14 open references: each prediction another reference, edited."""
    from sepit.tasks import get_task

    texts = sorted({s.reference for name in ("sp14_function", "sp14_process", "sp14_catalytic_activity",
                                              "sp14_location", "sp14_caption")
                    for split in ("train", "valid", "test") for s in get_task(name).samples(split)})
    rng = random.Random(seed)
    return [(edited(rng.choice(texts), rng), rng.choice(texts)) for _ in range(n)]


def engine(pairs: list[tuple[str, str]], entities: str = "off") -> dict[str, float]:
    """sepit score's point estimates (0-100) for one open-ended task holding the pairs."""
    from sepit.evaluation.scoring import ScoringSettings, score_rows

    rows = [{"id": f"{i:08d}", "task": "synthetic_open", "kind": "open", "prediction": p, "reference": r,
             "choices": None} for i, (p, r) in enumerate(pairs)]
    results, _, _ = score_rows({"synthetic_open": rows},
                               ScoringSettings(leakage=False, n_resamples=0, entities=entities), tasks={})
    return results["synthetic_open"]["metrics"]


def grounded_timings(pairs_by_source: dict[str, list[tuple[str, str]]]) -> list[list]:
    """Per pair source: seconds with sepit_v1 alone and with the grounded metrics, and their ratio."""
    from sepit.grounding.grounder import default_grounder
    from sepit.metrics import text

    rows = []
    for source, pairs in pairs_by_source.items():
        text._stem.cache_clear()
        default_grounder.cache_clear()  # no grounder of an earlier source in memory for the plain run
        # Both runs start with what exists now (WordNet, the naive path's caches) out of the collector's sight, as
        # the grounded run's own gc.freeze would put it: the ratio is the grounding's cost, not a freeze's gain.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _, plain_s = timed(engine, pairs)
        text._stem.cache_clear()  # the grounder is built inside the timing, as in a fresh `sepit score`
        values, grounded_s = timed(lambda p: engine(p, "auto"), pairs)
        rows.append([source, plain_s, grounded_s, grounded_s / plain_s, values.get("entity_f1")])
    return rows


def naive(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """The same point estimates from the reference packages, computed pair by pair and averaged."""
    from nltk.translate.bleu_score import sentence_bleu
    from nltk.translate.meteor_score import meteor_score
    from rouge_score.rouge_scorer import RougeScorer

    from sepit.metrics.text import word_tokens

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    sums = dict.fromkeys(METRICS, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns on every pair without a 2-, 3- or 4-gram match
        for prediction, reference in pairs:
            hyp, ref = word_tokens(prediction), word_tokens(reference)
            for name, weights in BLEU:
                sums[name] += sentence_bleu([ref], hyp, weights=weights)
            rouge = scorer.score(reference, prediction)  # (target, prediction)
            for name in ("rouge1", "rouge2", "rougeL"):
                sums[name] += rouge[name].fmeasure
            sums["meteor"] += meteor_score([ref], hyp)
    return {name: 100 * total / len(pairs) for name, total in sums.items()}


def timed(function, pairs):
    start = time.perf_counter()
    values = function(pairs)
    return values, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    from sepit.metrics import text

    pairs = synthetic_pairs(args.pairs, args.seed)
    warm = synthetic_pairs(200, args.seed + 1)
    engine(warm), naive(warm)  # imports and WordNet loading, outside both timings
    text._stem.cache_clear()  # the engine's stem memo starts cold, as in a fresh `sepit score`
    # The engine runs first: nltk's own WordNet caches, warmed by whoever runs first, then favour the naive path.
    fast, fast_s = timed(engine, pairs)
    slow, slow_s = timed(naive, pairs)
    diffs = {name: abs(fast[name] - slow[name]) for name in METRICS}

    print(f"scoring: {args.pairs} synthetic open-ended pairs, profile sepit_v1, point estimates (no bootstrap)")
    print(describe(machine()))
    print(table(["path", "seconds", "pairs/s"], [
        ["naive per pair (nltk sentence_bleu, rouge_score, nltk meteor)", slow_s, args.pairs / slow_s],
        ["sepit score_rows (sepit_v1)", fast_s, args.pairs / fast_s]]))
    print(f"speed-up: {slow_s / fast_s:.2f}x")
    print(table(["metric", "sepit", "naive", "abs diff"],
                [[name, f"{fast[name]:.6f}", f"{slow[name]:.6f}", f"{diffs[name]:.2e}"] for name in METRICS]))
    print(f"max abs diff (0-100 scale): {max(diffs.values()):.2e}")
    grounded = grounded_timings({"synthetic": pairs, "sp14 references, edited": sp14_pairs(args.pairs, args.seed)})
    print(table(["pairs", "sepit_v1 s", "sepit_v1 + grounded s", "ratio", "entity_f1"], grounded))
    save_json(args.json, {"benchmark": "scoring", "machine": machine(), "settings": vars(args),
                          "seconds": {"naive": slow_s, "sepit": fast_s}, "speedup": slow_s / fast_s,
                          "metrics": {"sepit": fast, "naive": slow}, "abs_diff": diffs,
                          "grounded": [dict(zip(("pairs", "plain_s", "grounded_s", "ratio", "entity_f1"), r))
                                       for r in grounded]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
