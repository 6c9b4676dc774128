"""Sample construction for the SP14 tasks: references written from the annotations by fixed templates.

Everything is deterministic: the instruction phrasing and any sampled term are chosen from a hash of the
task and sample id, never from process state, so every machine builds byte-identical tasks.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

from sepit.data.jsonl import read_jsonl
from sepit.data.protein import Protein, make_protein
from sepit.data.sample import InstructionSample, make_sample, option_lines

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Record:
    """One SP14 protein with its annotations, as in proteins.jsonl."""

    protein: Protein
    split: str
    row: dict


@dataclass(frozen=True)
class SP14:
    records: tuple[Record, ...]
    go: dict[str, dict]  # GO id -> {namespace, name, definition}
    term_counts: Counter  # GO id -> number of proteins annotated with it

    def names(self, ids: list[str], limit: int) -> list[str]:
        """Term names, most specific (rarest in SP14) first."""
        return [self.go[i]["name"] for i in self.rarest(ids)[:limit]]

    def rarest(self, ids: list[str]) -> list[str]:
        return sorted(ids, key=lambda i: (self.term_counts[i], i))


@cache
def load(data_dir: Path = DATA) -> SP14:
    structures = {row["accession"]: row["ca"] for _, row in read_jsonl(data_dir / "structures.jsonl")}
    go = {row["id"]: row for _, row in read_jsonl(data_dir / "go_terms.jsonl")}
    records, counts = [], Counter()
    for line, row in read_jsonl(data_dir / "proteins.jsonl"):
        accession = row["accession"]
        protein = make_protein(accession, row["sequence"], structures.get(accession),
                               where=f"{data_dir / 'proteins.jsonl'}, line {line}")
        records.append(Record(protein, row["split"], row))
        counts.update(t for terms in row["go"].values() for t in terms)
    return SP14(tuple(records), go, counts)


def pick(options: list, key: str):
    """A deterministic choice keyed by text (Python's hash() differs between processes)."""
    return options[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(options)]


def english_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


# --- open-ended references ---------------------------------------------------------------------------

def go_terms_reference(data: SP14, row: dict, namespace: str, lead: str) -> str | None:
    ids = row["go"][namespace]
    if not ids:
        return None
    parts = [lead.format(terms=english_list(data.names(ids, 8)))]
    # Definitions of the two most specific terms that have one: what the term names mean.
    defined = [i for i in data.rarest(ids) if data.go[i]["definition"]][:2]
    parts += [f"{sentence(data.go[i]['name'])[:-1]}: {data.go[i]['definition']}" for i in defined]
    return " ".join(parts)


def reactions_reference(data: SP14, row: dict) -> str | None:
    pairs = [(ec, r) for ec, r in zip(row["ec"], row["reactions"]) if r]
    if not pairs:
        return None
    return " ".join(f"Catalytic activity (EC {ec}): {reaction}" for ec, reaction in pairs)


def location_reference(data: SP14, row: dict, config: dict) -> str | None:
    parts = []
    label = row["localization"]
    if label:
        places = [config["localization_names"][p] for p in label.replace("Cytoplasm-Nucleus",
                                                                         "Cytoplasm/Nucleus").split("/")
                  if p in config["localization_names"]] or [label.lower()]
        parts.append(f"This protein is found in the {english_list(places)}.")
    membrane = {"M": "It is a membrane protein.", "S": "It is a soluble protein."}.get(row["membrane"])
    if membrane:
        parts.append(membrane)
    if row["go"]["cc"]:
        names = data.names(row["go"]["cc"], 5)
        verb = "components are" if len(names) > 1 else "component is"
        parts.append(f"Its Gene Ontology cellular {verb} {english_list(names)}.")
    return " ".join(parts) or None


def caption_reference(data: SP14, row: dict, config: dict) -> str | None:
    parts = []
    name, organism = row["protein_name"], row["organism"]
    if name:
        parts.append(f"This protein is {name}" + (f" from {organism}." if organism else "."))
    elif organism:
        parts.append(f"This is a protein from {organism}.")
    if row["go"]["mf"]:
        parts.append(f"It enables {english_list(data.names(row['go']['mf'], 4))}.")
    if row["go"]["bp"]:
        parts.append(f"It is involved in {english_list(data.names(row['go']['bp'], 4))}.")
    location = location_reference(data, row, config)
    if location:
        parts.append(location.replace("This protein is found", "It is found"))
    reactions = reactions_reference(data, row)
    if reactions:
        parts.append(reactions)
    return " ".join(parts) if len(parts) > 1 or (parts and not name) else None


def entities(row: dict, go_namespaces: tuple[str, ...] = (), ec: bool = False, location: bool = False) -> dict:
    """The annotations a reference is written from, as the grounded metrics read them (docs/data.md): GO ids of
    the given namespaces (all of them, not only the ones the reference names), EC numbers that have a reaction,
    DeepLoc locations."""
    found: dict[str, list[str]] = {}
    if go_namespaces:
        found["go"] = [t for ns in go_namespaces for t in row["go"][ns]]
    if ec:
        found["ec"] = [number for number, reaction in zip(row["ec"], row["reactions"]) if reaction]
    if location and row["localization"]:
        label = row["localization"]
        found["location"] = [label] if label != "Cytoplasm-Nucleus" else ["Cytoplasm", "Nucleus"]
    return {kind: ids for kind, ids in found.items() if ids}


# --- closed-set answers ------------------------------------------------------------------------------

def with_options(instruction: str, options: list[str]) -> str:
    return instruction + "\nOptions:\n" + option_lines(options) + "\nAnswer with the letter or the name of one option."


def localization_answer(row: dict, config: dict) -> str | None:
    return config["localization_names"].get(row["localization"])


def membrane_answer(row: dict) -> str | None:
    return {"M": "yes", "S": "no"}.get(row["membrane"])


def enzyme_class_answer(row: dict, config: dict) -> str | None:
    classes = {ec.split(".")[0] for ec in row["ec"]}
    return config["enzyme_classes"][classes.pop()] if len(classes) == 1 else None


# --- tasks -------------------------------------------------------------------------------------------

def build(task_name: str, spec: dict, config: dict, data_dir: Path = DATA) -> dict[str, list[InstructionSample]]:
    """{split: samples} for one task of tasks.yaml."""
    data, params = load(data_dir), spec.get("params", {})
    builder = spec["builder"]
    splits: dict[str, list[InstructionSample]] = {"train": [], "valid": [], "test": []}

    def add(record: Record, sample_id: str, instruction: str, reference: str, choices=None, **metadata):
        splits[record.split].append(make_sample(sample_id, task_name, record.protein, instruction, reference,
                                                choices, metadata))

    if builder == "go_cc":
        go_cc(data, task_name, spec, config, params["min_proteins"], add)
        return splits
    references: dict[str, Callable[[dict], str | None]] = {
        "go_terms": lambda row: go_terms_reference(data, row, params["namespace"], params["lead"]),
        "reactions": lambda row: reactions_reference(data, row),
        "location": lambda row: location_reference(data, row, config),
        "caption": lambda row: caption_reference(data, row, config),
        "localization": lambda row: localization_answer(row, config),
        "membrane": membrane_answer,
        "enzyme_class": lambda row: enzyme_class_answer(row, config),
    }
    # What each open builder's reference is written from.
    annotations: Callable[[dict], dict] | None = {
        "go_terms": lambda row: entities(row, (params.get("namespace"),)),
        "reactions": lambda row: entities(row, ec=True),
        "location": lambda row: entities(row, ("cc",), location=True),
        "caption": lambda row: entities(row, ("mf", "bp", "cc"), ec=True, location=True),
    }.get(builder)
    options = {"localization": list(config["localization_names"].values()),
               "enzyme_class": list(config["enzyme_classes"].values()),
               "membrane": ["yes", "no"]}.get(builder)
    for record in data.records:
        reference = references[builder](record.row)
        if reference is None:
            continue
        sample_id = record.protein.id
        instruction = pick(spec["instructions"], f"{task_name}:{sample_id}")
        if spec.get("answer_format") == "multiple_choice":
            instruction = with_options(instruction, options)
        metadata = {"entities": annotations(record.row)} if annotations else {}
        add(record, sample_id, instruction, reference, options, **metadata)
    return splits


def go_cc(data: SP14, task_name: str, spec: dict, config: dict, min_proteins: int, add) -> None:
    """One yes and one no question per protein with cellular-component terms (balanced by construction)."""
    generic = set(config["generic_cc_terms"])
    frequent = sorted(t for t, n in data.term_counts.items()
                      if n >= min_proteins and data.go[t]["namespace"] == "cc" and data.go[t]["name"] not in generic)
    for record in data.records:
        true_terms = record.row["go"]["cc"]
        if not true_terms:
            continue
        rng = random.Random(f"{task_name}:{record.protein.id}")  # str seeds are stable across processes
        true_names = [data.go[t]["name"] for t in true_terms]
        negatives = [t for t in frequent if t not in true_terms and not any(
            data.go[t]["name"] in name or name in data.go[t]["name"] for name in true_names)]
        positive = rng.choice(sorted(true_terms))
        for term, answer in ((positive, "yes"), (rng.choice(negatives), "no")):
            sample_id = f"{record.protein.id}:{term}"
            template = pick(spec["instructions"], f"{task_name}:{sample_id}")
            add(record, sample_id, template.format(term=data.go[term]["name"]), answer, ("yes", "no"),
                go_term=term)
