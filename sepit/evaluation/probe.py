"""The template-versus-biology probe (docs/evaluation.md, "Grounded metrics"): does a metric prefer the right
biology in plain words to the wrong biology in the benchmark's template?

For every sample of an open task with annotations (metadata.entities), two answers are built from the data:
- A, the right template with the wrong biology: the reference of the next sample (in id order) whose
  annotations of the task's kinds share nothing with this one's;
- B, the right biology in plain words: for GO, "Known roles: " and the annotated terms' names; for EC, "EC " and
  the EC numbers. B carries no template word.
A metric sees biology when it scores B above A.
"""

from __future__ import annotations

from typing import Sequence

from sepit.data.sample import InstructionSample
from sepit.grounding.grounder import Grounder
from sepit.metrics.entities import task_kinds


def probe_answers(samples: Sequence[InstructionSample], grounder: Grounder) -> list[tuple[InstructionSample, str, str]]:
    """(sample, answer A, answer B) for each sample whose annotations give a B and that has a disjoint partner."""
    samples = sorted((s for s in samples if "entities" in s.metadata), key=lambda s: s.id)
    refs = [grounder.from_annotations(s.metadata["entities"], s.id) for s in samples]
    kinds = task_kinds(refs)
    entity_sets = [{(k, e) for k in kinds for e in ref[k]} for ref in refs]
    out = []
    for i, sample in enumerate(samples):
        plain = _plain_words(refs[i], kinds, grounder)
        partner = next((j for step in range(1, len(samples)) for j in [(i + step) % len(samples)]
                        if entity_sets[j] and not entity_sets[j] & entity_sets[i]), None)
        if plain and partner is not None:
            out.append((sample, samples[partner].reference, plain))
    return out


def _plain_words(ref, kinds: Sequence[str], grounder: Grounder) -> str | None:
    names = sorted(grounder.ontology.terms[go_id].name for k in kinds if k.startswith("go_") for go_id in ref[k])
    if names:
        return "Known roles: " + "; ".join(names) + "."
    if "ec" in kinds and ref["ec"]:
        return "EC " + ", EC ".join(sorted(ref["ec"])) + "."
    return None
