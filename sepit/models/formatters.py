"""How a protein sequence is written into a text prompt, for models that read sequences as text (LLMs given
the sequence as characters, API models): the sample's `<protein>` placeholder is replaced by the formatted
sequence. The styles are those of the literature; `register_formatter` adds one.

    galactica   [START_AMINO]MKV...[END_AMINO]          Galactica-style markers (trained models)
    galactica_split                                     the same with Galactica's split marker before each
                                                        residue, as galai feeds the released Galactica models
    seq_equals  Seq=<MKV...>                            ProLLaMA
    raw         MKV...                                  SEPIT's "PureLLM" ablation
    bop         <bop>MKV...<eop>                        the spliced model's markers, as plain text
"""

from __future__ import annotations

from typing import Callable

from sepit.data.protein import ESM2_WINDOW
from sepit.data.sample import PROTEIN_PLACEHOLDER, InstructionSample
from sepit.errors import InputError

FORMATTERS: dict[str, Callable[[str], str]] = {}


def register_formatter(name: str, format_sequence: Callable[[str], str]) -> None:
    if name in FORMATTERS:
        raise ValueError(f"formatter {name!r} is already registered")
    FORMATTERS[name] = format_sequence


register_formatter("galactica", lambda sequence: f"[START_AMINO]{sequence}[END_AMINO]")
# galai escapes [START_AMINO] sequences so that Galactica's tokenizer splits them into single residues.
GALACTICA_SPLIT = "SPL1T-TH1S-Pl3A5E"
register_formatter("galactica_split", lambda sequence: "[START_AMINO]" + "".join(GALACTICA_SPLIT + residue for residue in sequence)
                   + "[END_AMINO]")
register_formatter("seq_equals", lambda sequence: f"Seq=<{sequence}>")
register_formatter("raw", lambda sequence: sequence)
register_formatter("bop", lambda sequence: f"<bop>{sequence}<eop>")


def check_format(style: str, key: str = "sequence_format") -> None:
    """Refuse an unknown style, naming `key`: where it was given (a config key, a model argument)."""
    if style not in FORMATTERS:
        raise InputError(key, f"unknown sequence format {style!r}", f"Choose one of {', '.join(sorted(FORMATTERS))}.")


def sequence_prompt(sample: InstructionSample, style: str, max_residues: int = ESM2_WINDOW) -> str:
    """The instruction with its `<protein>` replaced by the first `max_residues` residues in `style`."""
    check_format(style)
    return sample.instruction.replace(PROTEIN_PLACEHOLDER, FORMATTERS[style](sample.protein.sequence[:max_residues]))
