"""How well the grounding reads SP14's own references (docs/evaluation.md, "Grounding").

For every open SP14 sample (all splits), the reference text is grounded and compared with the annotations it was
written from (metadata.entities), on the kinds the task is scored on: precision, recall and F1 of the recovered
entries, micro-averaged over samples, per task and per synonym policy. The references also quote the definitions
of two terms, which name other terms: those count against precision, as they would in an answer. The last
column is the mean entity F1 that the reference itself scores as an answer (the metric's definition, with a true
but general entry no error): the ceiling a model that writes the reference word for word reaches.

    .venv/bin/python bench/grounding.py [--split test] [--policies none unambiguous all]
"""

from __future__ import annotations

import argparse
import time

from sepit.grounding.grounder import Grounder
from sepit.metrics.entities import entity_statistics, task_kinds
from sepit.tasks import get_task

TASKS = ("sp14_function", "sp14_process", "sp14_catalytic_activity", "sp14_location", "sp14_caption")


def measure(grounder: Grounder, samples, kinds) -> tuple[float, float, float, float]:
    hits = predicted = expected = 0
    refs, found = [], []
    for sample in samples:
        refs.append(grounder.from_annotations(sample.metadata["entities"], sample.id))
        found.append(grounder.ground(sample.reference))
        R = {(k, e) for k in kinds for e in refs[-1][k]}
        P = {(k, e) for k in kinds for e in found[-1][k]}
        hits, predicted, expected = hits + len(P & R), predicted + len(P), expected + len(R)
    precision, recall = hits / max(predicted, 1), hits / max(expected, 1)
    stats = entity_statistics(found, refs, kinds, grounder.ontology)
    ceiling = stats["entity_f1"][stats["mask_entity"]].mean()
    return 100 * precision, 100 * recall, 200 * precision * recall / max(precision + recall, 1e-12), 100 * ceiling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("train", "valid", "test", "all"), default="all")
    parser.add_argument("--policies", nargs="+", default=["none", "multiword", "unambiguous", "all"])
    args = parser.parse_args()
    splits = ("train", "valid", "test") if args.split == "all" else (args.split,)
    print("| task | n | synonyms | precision | recall | F1 | reference's entity F1 |\n|---|---|---|---|---|---|---|")
    for policy in args.policies:
        start = time.perf_counter()
        grounder = Grounder(synonyms=policy)
        for name in TASKS:
            task = get_task(name)
            samples = [s for split in splits for s in task.samples(split)]
            refs = [grounder.from_annotations(s.metadata["entities"], s.id) for s in samples]
            p, r, f, ceiling = measure(grounder, samples, task_kinds(refs))
            print(f"| {name} | {len(samples)} | {policy} | {p:.1f} | {r:.1f} | {f:.1f} | {ceiling:.1f} |")
        print(f"<!-- {policy}: {time.perf_counter() - start:.1f} s -->")


if __name__ == "__main__":
    main()
