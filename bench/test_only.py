"""A multiple-choice benchmark released with a test split only, brought in by a YAML task mapping, and the floors
that tell how much of a model's accuracy comes from the protein.

The benchmark is written in the shape published multiple-choice benchmarks use (a CSV with a question, options
A-D that differ from question to question, and an answer letter): SP14's test questions of sp14_localization and
sp14_enzyme_class, each with its answer and three other options drawn with a fixed seed. Then `sepit bench` runs
a SEPIT checkpoint (by log-likelihood, and by answer extraction), its option prior (the same model, the protein
withheld), random_option and first_option, with the leakage report against SP14's training proteins
(`--scoring.train sp14`), and the board is built. Prints one Markdown table.

    .venv/bin/python bench/test_only.py --checkpoint runs/demo/runs/tiny/stage2/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

import yaml

from sepit.commands.bench import bench
from sepit.evaluation.scoring import ScoringSettings
from sepit.interface import GenerationSettings
from sepit.tasks import get_task
from sepit_leaderboard.board import build_board
from sepit_leaderboard.results import find_results, load_run

SOURCES = ("sp14_localization", "sp14_enzyme_class")
LETTERS = "ABCD"


def write_benchmark(folder: Path, seed: int = 0) -> Path:
    """The CSV and its mapping; returns the mapping's path."""
    stream = random.Random(seed)
    rows = []
    for name in SOURCES:
        for sample in sorted(get_task(name).samples("test"), key=lambda s: s.id):
            others = [c for c in sample.choices if c != sample.reference]
            options = stream.sample(others, 3) + [sample.reference]
            stream.shuffle(options)
            rows.append({"qid": f"{name}/{sample.id}", "accession": sample.protein.id,
                         "sequence": sample.protein.sequence,
                         "question": sample.instruction.split("\nOptions:")[0].replace("<protein>", "this protein"),
                         **dict(zip(("a", "b", "c", "d"), options)),
                         "answer": LETTERS[options.index(sample.reference)]})
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "mc_test_only.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    mapping = folder / "mc_test_only.yaml"
    mapping.write_text(yaml.safe_dump({
        "task": "mc_test_only", "version": "1", "description": "SP14 test questions with four options each",
        "data": "mc_test_only.csv", "id": "qid", "protein": {"sequence": "sequence", "id": "accession"},
        "instruction": {"template": "{question}\n<protein>\nOptions:\n{options}\nAnswer with the letter."},
        "reference": {"field": "answer", "letter": True}, "choices": ["a", "b", "c", "d"]}, sort_keys=False))
    return mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", default="runs/test_only")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    out = Path(args.output)
    mapping = str(write_benchmark(out / "data"))
    likelihood = {"*": "loglikelihood"}
    runs = {
        "sepit (log-likelihood)": ("sepit-ll", args.checkpoint, None, likelihood),
        "sepit (answer extraction)": ("sepit-gen", args.checkpoint, None, None),
        "option prior of sepit": ("sepit-prior", "option_prior", {"model": args.checkpoint}, likelihood),
        "random_option": ("random", "random_option", None, None),
        "first_option": ("first", "first_option", None, None),
    }
    seconds = {}
    for label, (folder, model, model_args, methods) in runs.items():
        clock = time.perf_counter()
        bench(model, [mapping], out / "runs" / folder, model_args=model_args, batch_size=8,
              generation=GenerationSettings(max_new_tokens=32),
              scoring=ScoringSettings(train="sp14", closed_methods=methods, n_resamples=args.resamples))
        seconds[label] = time.perf_counter() - clock
    results = {label: json.loads((out / "runs" / folder / "results.json").read_text())
               for label, (folder, *_) in runs.items()}
    board = build_board([load_run(p) for p in find_results(out / "runs" / "sepit-ll")]
                        + [load_run(p) for p in find_results(out / "runs" / "sepit-prior")],
                        n_resamples=args.resamples)
    gap = next(r for r in board["rows"] if r.get("vs_prior"))["vs_prior"]["mc_test_only"]
    print("| run | accuracy [95 % CI] | extraction failures | median identity to train | seconds |")
    print("|---|---|---|---|---|")
    for label, document in results.items():
        task = document["tasks"]["mc_test_only"]
        lo, hi = task["ci"]["accuracy"]
        print(f"| {label} | {task['metrics']['accuracy']:.1f} [{lo:.1f}, {hi:.1f}] | "
              f"{task['metrics']['extraction_failure_rate']:.1f} % | {task['leakage']['median_identity']:.1f} | "
              f"{seconds[label]:.0f} |")
    print(f"\nsepit minus its option prior (paired, log-likelihood): {gap['diff']:+.1f} "
          f"[{gap['ci'][0]:+.1f}, {gap['ci'][1]:+.1f}], p = {gap['p_value']:.3f}, n = {gap['n_shared']}")
    bins = results["sepit (log-likelihood)"]["tasks"]["mc_test_only"]["leakage"]["bins"]
    print("sepit (log-likelihood) by identity to SP14 train: " + ", ".join(
        f"{label} n={b['n']}" + (f" {b['metrics']['accuracy']:.1f}" if b["n"] else "") for label, b in bins.items()))


if __name__ == "__main__":
    main()
