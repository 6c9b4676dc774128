"""Grounded metrics: each answer's ontology entries (sepit/grounding) against its reference's, per sample, as
functions of a weight matrix W (B, n) like the text metrics (docs/evaluation.md, "Grounded metrics").

- entity_precision / entity_recall / entity_f1: the GO terms, EC numbers and DeepLoc locations of the kinds the
  task's references name at all (a function task is scored on molecular-function terms; naming a location there
  neither helps nor hurts). Recall counts the reference's own entries. Precision counts every named entry that is
  true: the reference's, or a more general one it implies (a GO ancestor of an annotated term, a partial EC
  number the reference's falls under), since annotations are not propagated and a true general statement is no
  error. An answer that names nothing scores 0.
- go_hf1: hierarchical F1 of the true-path closures (is_a, part_of; the three roots left out), so an answer that
  names a parent of the right term earns partial credit.
- ec_l1 .. ec_l4: F1 of the EC numbers cut to their first k levels (a wrong fourth digit still earns level 3),
  over the samples whose reference reaches level k.
- location_accuracy: the answer names every location the reference requires (its DeepLoc label, where
  annotated) and none that its annotations do not support.

Each metric is averaged over the samples whose reference has entries of its kind (`n` in the results says how
many); the other samples have no value for it. The functions give 0-1; `Grounding` scales to 0-100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from sepit.grounding.enzyme import LEVELS, ec_prefix
from sepit.grounding.grounder import KINDS, Grounder, paused_gc
from sepit.grounding.ontology import GeneOntology

GO_KINDS = ("go_mf", "go_bp", "go_cc")
# metric -> the mask it is averaged over
MASKS = {"entity_precision": "entity", "entity_recall": "entity", "entity_f1": "entity", "go_hf1": "go",
         **{f"ec_l{k}": f"ec{k}" for k in range(1, LEVELS + 1)}, "location_accuracy": "location"}


def task_kinds(references: Sequence[Mapping[str, frozenset]]) -> tuple[str, ...]:
    """The entity kinds a task's references name at all: what its answers are scored on."""
    return tuple(kind for kind in KINDS if any(ref[kind] for ref in references))


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _is_true(entry: str, ref_entries: frozenset[str], ref_go: frozenset[str], ref_ec: frozenset[str]) -> bool:
    """Whether a named entry is the reference's, or a more general one it implies: a GO ancestor of an annotated
    term (`ref_go`: the reference's closure), a partial EC number the reference's falls under. Entries of all
    kinds are told apart by their form: GO ids, EC numbers, DeepLoc labels."""
    if entry in ref_entries:
        return True
    if entry.startswith("GO:"):
        return entry in ref_go
    if entry.endswith("-"):  # a partial EC number
        known = [level for level in entry.split(".") if level != "-"]
        return any(e.split(".")[:len(known)] == known for e in ref_ec)
    return False


def entity_statistics(predictions: Sequence[Mapping[str, frozenset]], references: Sequence[Mapping[str, frozenset]],
                      kinds: Sequence[str], ontology: GeneOntology) -> dict[str, np.ndarray]:
    """Per-sample values (n,) of every grounded metric, and a mask (n,) of the samples each is defined on."""
    n = len(references)
    stats = {name: np.zeros(n) for name in MASKS}
    masks = {f"mask_{name}": np.zeros(n, dtype=bool) for name in set(MASKS.values())}
    go_kinds = [k for k in GO_KINDS if k in kinds]
    closures: dict[int, frozenset[str]] = {}  # by reference object: references grounded from one text are one
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        if id(ref) not in closures:
            closures[id(ref)] = _closure(ontology, (e for k in go_kinds for e in ref[k]))
        ref_go = closures[id(ref)]
        P = frozenset().union(*(pred[k] for k in kinds))  # ids of different kinds never coincide
        R = frozenset().union(*(ref[k] for k in kinds))
        if R:
            masks["mask_entity"][i] = True
            precision = (sum(_is_true(entry, R, ref_go, ref["ec"]) for entry in P) / len(P)) if P else 0.0
            recall = len(P & R) / len(R)
            stats["entity_precision"][i], stats["entity_recall"][i] = precision, recall
            stats["entity_f1"][i] = _f1(precision, recall)
        if ref_go:
            masks["mask_go"][i] = True
            pred_go = _closure(ontology, (e for k in go_kinds for e in pred[k]))
            stats["go_hf1"][i] = _set_f1(pred_go, ref_go)
        for level in range(1, LEVELS + 1) if "ec" in kinds else ():
            cut_ref = {c for c in (ec_prefix(e, level) for e in ref["ec"]) if c}
            if cut_ref:
                masks[f"mask_ec{level}"][i] = True
                stats[f"ec_l{level}"][i] = _set_f1({c for c in (ec_prefix(e, level) for e in pred["ec"]) if c},
                                                   cut_ref)
        if "location" in kinds and ref["location_label"]:
            masks["mask_location"][i] = True
            stats["location_accuracy"][i] = float(ref["location_label"] <= pred["location"] <= ref["location"])
    return {**stats, **masks}


def _set_f1(predicted: set, expected: set) -> float:
    hits = len(predicted & expected)
    return 0.0 if hits == 0 else 2 * hits / (len(predicted) + len(expected))


def _closure(ontology: GeneOntology, ids) -> frozenset[str]:
    found: set[str] = set()
    for go_id in ids:
        found |= ontology.closure(go_id)
    return frozenset(found)


def reported(stats: Mapping[str, np.ndarray]) -> list[str]:
    """The grounded metrics defined on at least one sample."""
    return [name for name, mask in MASKS.items() if stats[f"mask_{mask}"].any()]


def entity_metrics(stats: Mapping[str, np.ndarray], W: np.ndarray) -> dict[str, np.ndarray]:
    """Metric -> mean over its samples under each row of W (B, n), 0-1. (B,) each; NaN where a row weighs none."""
    out = {}
    for name in reported(stats):
        mask = stats[f"mask_{MASKS[name]}"].astype(float)
        totals = W @ mask
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(totals > 0, (W @ (stats[name] * mask)) / totals, np.nan)
    return out


def per_sample(stats: Mapping[str, np.ndarray]) -> dict[str, list[float | None]]:
    """Each sample's grounded metrics, 0-1; None where the sample's reference has no entries of that kind."""
    return {name: [float(v) if m else None for v, m in zip(stats[name], stats[f"mask_{MASKS[name]}"])]
            for name in reported(stats)}


@dataclass(frozen=True)
class Grounding:
    """The grounded metrics of one open task, in scoring's terms: reference entities by sample id (from the
    sample's annotations, or its reference text grounded), answers grounded when scored. Values are 0-100."""

    grounder: Grounder
    references: Mapping[str, Mapping[str, frozenset]]
    kinds: tuple[str, ...]  # from the task's whole split, so a sample's score never depends on which rows are scored

    def statistics(self, rows: Sequence[dict]) -> dict[str, np.ndarray]:
        refs = [self.references[r["id"]] for r in rows]
        with paused_gc():
            stats = entity_statistics([self.grounder.ground(r["prediction"]) for r in rows], refs, self.kinds,
                                      self.grounder.ontology)
        stats["kinds"] = np.array(self.kinds, dtype=object)
        return stats

    def metrics(self, stats: Mapping[str, np.ndarray], W: np.ndarray) -> dict[str, np.ndarray]:
        return {name: 100 * values for name, values in entity_metrics(stats, W).items()}

    def per_sample(self, stats: Mapping[str, np.ndarray]) -> dict[str, list[float | None]]:
        return {name: [None if v is None else 100 * v for v in values]
                for name, values in per_sample(stats).items()}

    @staticmethod
    def summary(stats: Mapping[str, np.ndarray]) -> dict:
        """What the grounded metrics were computed on: the kinds, and the samples each metric covers."""
        n = len(stats["mask_entity"])
        without = int(n - stats["mask_entity"].sum())
        return {"kinds": list(stats["kinds"]), "samples_without_entities": without,
                "share_without_entities": round(100 * without / n, 2) if n else None,
                "n": {name: int(stats[f"mask_{MASKS[name]}"].sum()) for name in reported(stats)}}
