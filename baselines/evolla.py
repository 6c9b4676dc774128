"""Evolla (westlake-repl) behind the common model interface: transformers' `EvollaForProteinText2Text` and
`EvollaProcessor` from a local folder, evaluated as released, without training.

Evolla reads a protein as SaProt structure-aware tokens: each residue's amino acid paired with its Foldseek 3Di
letter ("Md", "Kv", ...). A sample's 3Di string comes from its metadata field `foldseek_field` (one letter per
residue). A protein without one gets the masked structure letter '#' at every residue: the letter SaProt and
Evolla write for residues whose predicted structure is not trusted (`######` in Evolla's `examples/inputs.tsv`).
Evolla was trained with 3Di for every protein, so numbers without it are a lower bound (docs/baselines.md).

    sepit bench --model evolla --model_args '{model: models/Evolla-10B-hf, dtype: bfloat16}' --tasks sp14 ...
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch

from sepit.data.errors import DataError
from sepit.data.manifest import sha256_folder
from sepit.data.protein import ESM2_WINDOW, STANDARD_RESIDUES, crop_to_window
from sepit.data.sample import PROTEIN_PLACEHOLDER, InstructionSample
from sepit.checkpoints.model import dtype_named
from sepit.interface import GenerationSettings, ModelCard, ProteinLLM
from sepit.model_paths import resolve_model_path

if TYPE_CHECKING:
    from sepit.tasks import Task

# Part of the fingerprint: bump when the prompt, the protein tokens or the decoding below change.
CODE_VERSION = "evolla-1"
# The system turn of Evolla's own examples (transformers' model docs, scripts/inference_hf.py of westlake-repl/Evolla).
SYSTEM_PROMPT = "You are an AI expert that can answer any questions about protein."
MASK = "#"  # SaProt's masked letter, for a structure state and for an amino acid alike
# Foldseek's 20 3Di states in SaProt's vocabulary order, and the mask.
STRUCTURE_LETTERS = frozenset("pynwrqhgdlvtmfsaeikc" + MASK)
_SENTENCE_START = re.compile(r"(^|[.!?]\s+|\n\s*)" + re.escape(PROTEIN_PLACEHOLDER))
_AFTER_NOUN = re.compile(r"\b(protein|enzyme)\s+" + re.escape(PROTEIN_PLACEHOLDER), re.IGNORECASE)


def evolla_question(instruction: str) -> str:
    """The instruction with its `<protein>` taken out, since Evolla gets the protein beside the text. Evolla's own
    examples ask about "this protein" ("What is the catalytic activity of this protein?", `examples/inputs.tsv`;
    "What is the function of this protein?", transformers' docs), so the placeholder becomes "this protein"
    ("This protein" where a sentence starts); after "protein" or "enzyme" it is dropped ("the enzyme <protein>"
    -> "the enzyme"); on a line of its own (mapped tasks' `{question}\\n<protein>\\n{options}`) the line goes."""
    lines = instruction.split("\n")
    kept = [line for line in lines if line.strip() != PROTEIN_PLACEHOLDER]
    if len(kept) < len(lines) and any(line.strip() for line in kept):
        return "\n".join(kept).strip()
    text = _AFTER_NOUN.sub(r"\1", instruction)
    text = _SENTENCE_START.sub(lambda match: match.group(1) + "This protein", text)
    return text.replace(PROTEIN_PLACEHOLDER, "this protein").strip()


def structure_string(sample: InstructionSample, field: str) -> str:
    """The sample's 3Di string from `metadata[field]`, lower case, one letter per residue; all '#' without one.
    A string of another length is refused rather than cut or padded: it belongs to another sequence."""
    value = sample.metadata.get(field)
    length = len(sample.protein.sequence)
    if value is None:
        return MASK * length
    where = f"sample {sample.id!r} (task {sample.task})"
    if not isinstance(value, str):
        raise DataError(where, f"metadata {field!r} must be a 3Di string, got {type(value).__name__}",
                        "Give one Foldseek 3Di letter per residue, or leave the field out.")
    if len(value) != length:
        raise DataError(where, f"metadata {field!r} has {len(value)} 3Di letters for a sequence of {length} "
                        "residues", "Give one Foldseek 3Di letter per residue ('#' where the structure is not "
                        "known), computed from this sequence's structure, or leave the field out.")
    value = value.lower()
    bad = sorted(set(value) - STRUCTURE_LETTERS)
    if bad:
        raise DataError(where, f"metadata {field!r} holds letters that are not 3Di states: {', '.join(map(repr, bad))}",
                        "Write Foldseek's 3Di alphabet (ACDEFGHIKLMNPQRSTVWY, either case), '#' for unknown.")
    return value


def protein_entry(sample: InstructionSample, field: str, max_residues: int) -> dict[str, str]:
    """The processor's `{"aa_seq", "foldseek"}` for a sample, both cut by the shared crop rule. SaProt's
    vocabulary has only the 20 standard amino acids: X, B, Z, U and O become its masked amino acid '#' (the
    processor would otherwise make them `<unk>`, a token SaProt never trained)."""
    structure = structure_string(sample, field)
    protein = crop_to_window(sample.protein, max_residues)
    residues = "".join(r if r in STANDARD_RESIDUES else MASK for r in protein.sequence)
    return {"aa_seq": residues, "foldseek": structure[:len(protein)]}


def chat(sample: InstructionSample) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": evolla_question(sample.instruction)}]


class EvollaModel(ProteinLLM):
    """Evolla's answers: one sample at a time through `generate` with its KV cache, as Evolla's own inference does.

    Not batched: in transformers 5.24 a left-padded batch fails in `generate` (the cross-attention takes the
    whole text attention mask as the mask of the current query positions, so with the cache it broadcasts
    the one new position to the prompt's length and the next decoder layer fails on the shape)."""

    def __init__(self, model: str, dtype: Literal["float32", "bfloat16", "float16"] = "float32",
                 device: str = "auto", foldseek_field: str = "foldseek", max_residues: int = ESM2_WINDOW,
                 name: str = "evolla"):
        """
        Args:
            model: a local folder with the model and processor (`westlake-repl/Evolla-10B-hf`, downloaded).
            dtype: weights and activations (bfloat16 for the 10B model on a GPU).
            device: auto (this process's GPU if there is one, else CPU), cpu, cuda or cuda:N.
            foldseek_field: the sample metadata field with a protein's Foldseek 3Di string; without it, every
                residue gets the masked structure letter '#'.
            max_residues: residues read per protein (the first ones: the shared crop rule); 1022 fits SaProt's
                1024-token window with `<cls>` and `<eos>`.
            name: the model's name in results and on the leaderboard.
        """
        from transformers import AutoConfig, EvollaForProteinText2Text, EvollaProcessor

        path = resolve_model_path(model)
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        if config.model_type != "evolla":
            raise DataError(str(path), f"holds a {config.model_type} model, not Evolla",
                            "Give the folder of westlake-repl/Evolla-10B-hf (docs/baselines.md).")
        self.processor = EvollaProcessor.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        self.processor.tokenizer.padding_side = "right"  # choices scored together (loglikelihood)
        self.model = EvollaForProteinText2Text.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, dtype=dtype_named(dtype)).eval().requires_grad_(False)
        self.name, self.device_spec = name, device
        self.foldseek_field, self.max_residues = foldseek_field, max_residues
        settings = json.dumps({"foldseek_field": foldseek_field, "max_residues": max_residues, "dtype": dtype,
                               "code": CODE_VERSION}, sort_keys=True)
        self.fingerprint = hashlib.sha256("\n".join([*sha256_folder(path), settings]).encode()).hexdigest()[:16]

    def prepare(self, tasks: Sequence[Task]) -> None:
        """Every sample's 3Di string checked before predicting: a bad one late in a file would otherwise stop a
        long run after hours of predictions."""
        for task in tasks:
            for samples in task.splits().values():
                for sample in samples:
                    structure_string(sample, self.foldseek_field)

    def _ready(self) -> torch.device:
        """Move to this process's device on first use (Lightning has set the rank's GPU by then)."""
        if self.device_spec == "auto":
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
        else:
            device = torch.device(self.device_spec)
        self.model.to(device)
        return self.model.device

    @property
    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos])

    def encode(self, samples: Sequence[InstructionSample]):
        """The processor's inputs for `samples`: protein tokens and the chat prompt (generation prompt added).
        The text limit is the model's context, not the processor's default of 512 tokens, which would cut the
        end of a longer prompt, its generation prompt first."""
        limit = self.model.config.max_position_embeddings
        inputs = self.processor(proteins=[protein_entry(s, self.foldseek_field, self.max_residues) for s in samples],
                                messages_list=[chat(s) for s in samples], protein_max_length=self.max_residues + 2,
                                text_max_length=limit)
        for sample, length in zip(samples, inputs["attention_mask"].sum(dim=1).tolist()):
            if length >= limit:
                raise DataError(f"sample {sample.id!r} (task {sample.task})", f"the prompt fills Evolla's whole "
                                f"context of {limit} tokens", "Shorten the instruction.")
        return inputs

    @torch.no_grad()
    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        device = self._ready()
        options: dict[str, Any] = {"do_sample": config.do_sample}
        if config.do_sample:
            torch.manual_seed(config.seed)
            options.update(temperature=config.temperature, top_p=config.top_p)
        answers = []
        for sample in samples:
            inputs = self.encode([sample]).to(device)
            output = self.model.generate(**inputs, max_new_tokens=config.max_new_tokens,
                                         pad_token_id=self.processor.tokenizer.pad_token_id, **options)
            answers.append(self._answer(output[0, inputs["input_ids"].shape[1]:].tolist()))
        return answers

    def _answer(self, new_tokens: list[int]) -> str:
        """The text up to the first end-of-turn token, special tokens skipped."""
        eos = self._eos_ids
        end = next((i for i, token in enumerate(new_tokens) if token in eos), len(new_tokens))
        return self.processor.tokenizer.decode(new_tokens[:end], skip_special_tokens=True).strip()

    def _answer_ids(self, sample: InstructionSample, answer: str) -> list[int]:
        """An answer's tokens as the chat template writes the assistant turn, up to and including the first
        end-of-turn token (what generation stops at): the text of the answered chat after the prompt."""
        tokenizer = self.processor.tokenizer
        prompt = tokenizer.apply_chat_template(chat(sample), tokenize=False, add_generation_prompt=True)
        answered = tokenizer.apply_chat_template(chat(sample) + [{"role": "assistant", "content": answer}],
                                                 tokenize=False)
        if not answered.startswith(prompt):
            raise ValueError("the chat template writes an answered chat that does not start with its prompt; "
                             "Evolla's Llama-3 template does")
        ids = tokenizer(answered[len(prompt):], add_special_tokens=False)["input_ids"]
        eos = self._eos_ids
        end = next((i + 1 for i, token in enumerate(ids) if token in eos), len(ids))
        return ids[:end]

    @torch.no_grad()
    def loglikelihood(self, samples: Sequence[InstructionSample]) -> list[list[float]]:
        """Per sample, the summed log-probability of each choice's tokens and end-of-turn token as the answer;
        one forward pass per sample over its choices, right-padded (no position shifts)."""
        device = self._ready()
        return [self._choice_scores(sample, device) if sample.choices else [] for sample in samples]

    def _choice_scores(self, sample: InstructionSample, device: torch.device) -> list[float]:
        inputs = self.encode([sample])
        prompt = inputs["input_ids"][0].tolist()
        answers = [self._answer_ids(sample, choice) for choice in sample.choices]
        width = len(prompt) + max(map(len, answers))
        pad = self.processor.tokenizer.pad_token_id
        ids = torch.tensor([prompt + a + [pad] * (width - len(prompt) - len(a)) for a in answers])  # (C, T)
        mask = torch.tensor([[1] * (len(prompt) + len(a)) + [0] * (width - len(prompt) - len(a)) for a in answers])
        n = len(answers)
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                            protein_input_ids=inputs["protein_input_ids"].expand(n, -1).to(device),
                            protein_attention_mask=inputs["protein_attention_mask"].expand(n, -1).to(device),
                            use_cache=False).logits  # (C, T, V)
        logprobs = logits.float().log_softmax(dim=-1)
        scores = []
        for row, answer in enumerate(answers):
            positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(answer), device=device)
            scores.append(logprobs[row, positions, torch.tensor(answer, device=device)].sum().item())
        return scores

    def describe(self) -> ModelCard:
        total = sum(p.numel() for p in self.model.parameters())
        return ModelCard(self.name, "seq+structure", total, total, self.fingerprint)
