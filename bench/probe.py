"""The template-versus-biology probe on SP14's test split: how often each metric scores the wrong biology in the
template (A) above the right biology in plain words (B), and their means (sepit/evaluation/probe.py builds A and
B from the data; docs/evaluation.md, "Grounded metrics").

    .venv/bin/python bench/probe.py [--split test]
"""

from __future__ import annotations

import argparse

import numpy as np

from sepit.evaluation.probe import probe_answers
from sepit.evaluation.scoring import ScoringSettings, score_rows
from sepit.grounding.grounder import default_grounder
from sepit.tasks import get_task

TASKS = ("sp14_function", "sp14_process", "sp14_catalytic_activity", "sp14_location", "sp14_caption")
METRICS = ("meteor", "bleu4", "rougeL", "entity_f1", "go_hf1", "ec_l4", "location_accuracy")


def per_sample(task, triples, index: int) -> dict[str, dict]:
    rows = [{"task": task.name, "id": s.id, "prediction": t[index], "reference": s.reference, "kind": "open",
             "choices": None} for t in triples for s in [t[0]]]
    _, logs, _ = score_rows({task.name: rows}, ScoringSettings(leakage=False, n_resamples=0),
                            tasks={task.name: task}, samples={task.name: [t[0] for t in triples]})
    return {log["id"]: log for log in logs[task.name]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    print("| task | n | metric | A above B | B above A | mean A | mean B |\n|---|---|---|---|---|---|---|")
    for name in TASKS:
        task = get_task(name)
        triples = probe_answers(task.samples(args.split), default_grounder())
        a, b = per_sample(task, triples, 1), per_sample(task, triples, 2)
        for metric in METRICS:
            pairs = np.array([(a[i][metric], b[i][metric]) for i in a
                              if a[i].get(metric) is not None and b[i].get(metric) is not None])
            if len(pairs):
                print(f"| {name} | {len(pairs)} | {metric} | {100 * np.mean(pairs[:, 0] > pairs[:, 1]):.1f} % | "
                      f"{100 * np.mean(pairs[:, 1] > pairs[:, 0]):.1f} % | {pairs[:, 0].mean():.1f} | "
                      f"{pairs[:, 1].mean():.1f} |")


if __name__ == "__main__":
    main()
