"""How well the grounding reads SP14's own references (docs/evaluation.md, "Grounding").

For every open SP14 sample (all splits), the reference text is grounded and compared with the annotations it was
written from (metadata.entities), on the kinds the task is scored on: precision, recall and F1 of the recovered
entries, micro-averaged over samples, per task and per synonym policy. The references also quote the definitions
of two terms, which name other terms: those count against precision, as they would in an answer.

    .venv/bin/python bench/grounding.py [--split test] [--policies none unambiguous all]
"""

from __future__ import annotations

import argparse
import time

from sepit.grounding.grounder import Grounder
from sepit.metrics.entities import task_kinds
from sepit.tasks import get_task

TASKS = ("sp14_function", "sp14_process", "sp14_catalytic_activity", "sp14_location", "sp14_caption")


def measure(grounder: Grounder, samples, kinds) -> tuple[float, float, float]:
    hits = predicted = expected = 0
    for sample in samples:
        ref = grounder.from_annotations(sample.metadata["entities"], sample.id)
        found = grounder.ground(sample.reference)
        R = {(k, e) for k in kinds for e in ref[k]}
        P = {(k, e) for k in kinds for e in found[k]}
        hits, predicted, expected = hits + len(P & R), predicted + len(P), expected + len(R)
    precision, recall = hits / max(predicted, 1), hits / max(expected, 1)
    return 100 * precision, 100 * recall, 200 * precision * recall / max(precision + recall, 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("train", "valid", "test", "all"), default="all")
    parser.add_argument("--policies", nargs="+", default=["none", "multiword", "unambiguous", "all"])
    args = parser.parse_args()
    splits = ("train", "valid", "test") if args.split == "all" else (args.split,)
    print(f"| task | n | synonyms | precision | recall | F1 |\n|---|---|---|---|---|---|")
    for policy in args.policies:
        start = time.perf_counter()
        grounder = Grounder(synonyms=policy)
        for name in TASKS:
            task = get_task(name)
            samples = [s for split in splits for s in task.samples(split)]
            refs = [grounder.from_annotations(s.metadata["entities"], s.id) for s in samples]
            p, r, f = measure(grounder, samples, task_kinds(refs))
            print(f"| {name} | {len(samples)} | {policy} | {p:.1f} | {r:.1f} | {f:.1f} |")
        print(f"<!-- {policy}: {time.perf_counter() - start:.1f} s -->")


if __name__ == "__main__":
    main()
