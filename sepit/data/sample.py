"""Instruction samples: one protein, one instruction with a `<protein>` placeholder, one reference answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from sepit.data.errors import DataError
from sepit.data.protein import Protein

PROTEIN_PLACEHOLDER = "<protein>"
# The official SEPIT code wraps the placeholder itself (in training only for proteins found in pdb.h5); data
# written already wrapped is normalised back.
_WRAPPED_PLACEHOLDER = "<bop><protein><eop>"


@dataclass(frozen=True)
class InstructionSample:
    """A question about one protein. `choices` is set for closed-set tasks (the reference is one of them)."""

    id: str
    task: str
    protein: Protein
    instruction: str
    reference: str
    choices: tuple[str, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def kind(self) -> str:
        return "open" if self.choices is None else "closed"


def make_sample(id: str, task: str, protein: Protein, instruction: Any, reference: Any,
                choices: Sequence[str] | None = None, metadata: dict | None = None, *,
                where: str = "", reference_required: bool = True) -> InstructionSample:
    """Validate one sample; raise DataError naming `where` and the fix. Without `reference_required` (a
    benchmark file without answers: predictions only) the reference is left empty."""
    where = where or f"sample {id!r}"
    if not isinstance(id, str) or not id:
        raise DataError(where, f"sample id must be a non-empty string, got {id!r}", "Give every sample an id.")
    if not isinstance(instruction, str):
        raise DataError(where, "instruction must be a string", "Write the question as text.")
    instruction = instruction.replace(_WRAPPED_PLACEHOLDER, PROTEIN_PLACEHOLDER)
    count = instruction.count(PROTEIN_PLACEHOLDER)
    if count != 1:
        problem = "missing the <protein> placeholder" if count == 0 else f"{count} <protein> placeholders"
        raise DataError(where, f"instruction is {problem}: {instruction[:80]!r}",
                        "Put exactly one <protein> where the protein goes, e.g. 'What does <protein> do?'.")
    if not reference_required:
        reference = ""
    elif not isinstance(reference, str) or not reference.strip():
        raise DataError(where, "empty or missing reference answer", "Give the expected answer as non-empty text.")
    if metadata is not None and not isinstance(metadata, dict):
        raise DataError(where, f"metadata must be an object, got {type(metadata).__name__}",
                        'Write metadata as {"key": value, ...} or leave it out.')
    if choices is not None:
        choices = check_choices(choices, reference if reference_required else None, where)
    return InstructionSample(id, task, protein, instruction, reference, choices, dict(metadata or {}))


def answer_key(text: str) -> str:
    """How a closed-set answer is matched to its choices: case and surrounding space do not count."""
    return text.strip().lower()


def is_yes_no(choices: Sequence[str]) -> bool:
    return {answer_key(c) for c in choices} == {"yes", "no"}


# Letters that name the options of a multiple-choice question, in order (written by task builders, read by
# answer extraction): at most 26 options.
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def option_lines(options: Sequence[str]) -> str:
    """The options as a question shows them, one per line: "A. first", "B. second", ..."""
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"{len(options)} options; at most {len(OPTION_LETTERS)} can be named by a letter")
    return "\n".join(f"{letter}. {option}" for letter, option in zip(OPTION_LETTERS, options))


def check_choices(choices: Any, reference: str | None, where: str) -> tuple[str, ...]:
    """The options of a closed-set question (a sample or a prediction row), checked; DataError otherwise.
    `reference` None: a question without a known answer."""
    if not isinstance(choices, (list, tuple)):
        raise DataError(where, f"choices must be a list of strings, got {type(choices).__name__}",
                        'Write the options as ["yes", "no"], or leave choices out.')
    choices = tuple(choices)
    if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise DataError(where, f"choices must be at least two non-empty strings, got {list(choices)!r}",
                        "List the options as strings, or leave choices out for an open-ended question.")
    if len(choices) > len(OPTION_LETTERS):
        raise DataError(where, f"{len(choices)} choices; at most {len(OPTION_LETTERS)} can be named by a letter",
                        "Split the question, or ask it open-ended.")
    if len({answer_key(c) for c in choices}) != len(choices):
        raise DataError(where, f"duplicate choices {list(choices)!r}", "Make every option distinct.")
    if reference is not None and answer_key(reference) not in {answer_key(c) for c in choices}:
        raise DataError(where, f"reference {reference!r} is not one of the choices {list(choices)!r}",
                        "The reference of a closed-set question must be one of its choices.")
    return choices


@dataclass(frozen=True)
class CaptionPair:
    """A protein and a free-text description of it: the stage-0 contrastive warm-up data."""

    id: str
    protein: Protein
    caption: str
