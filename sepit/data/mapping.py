"""Declarative task mappings: a YAML file turns a benchmark's released data file into a task, without code.

    task: my_benchmark                  # the task's name (default: the YAML's file name)
    version: "1"                        # your label; the task's version adds a hash of the mapping and the data
    data: test.jsonl                    # relative to the YAML: .json (an array), .jsonl, .csv or .tsv, any .gz;
                                        # or {train: train.json, test: test.json}, one file per split
    id: accession                       # default: the record's number
    protein: {sequence: aa_seq, id: uniprot_id}
    instruction: {template: "{question}\\n<protein>\\n{options}"}
    reference: {field: answer, letter: true}   # leave out for a file without answers: predictions only
    choices: [option_a, option_b, option_c, option_d]
    split: {value: test}
    metadata: [foldseek]

A rule (each value above) is a field name (dotted for nested fields, `metadata.split`), or an object with one of
`field`, `template` (`{field}` placeholders; `{options}` is the choices as "A. ..." lines) or `value` (a
constant), and modifiers: `fence` (the sequence inside a ``` block), `regex` (its first group), `map` (value
translations), `letter` / `index` (a reference that names an option). `format: NAME` starts from a shipped
mapping of a peer's released format (`sepit/data/formats/`, `sepit data formats`) and overrides its keys.
docs/data.md, "Task mappings", is the reference.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from sepit.data.errors import DataError, raise_or_collect
from sepit.data.generic import RecordChecker
from sepit.data.manifest import sha256_file
from sepit.data.protein import make_protein
from sepit.data.records import FILE_TYPES, lookup, read_records
from sepit.data.sample import OPTION_LETTERS, InstructionSample, option_lines

FORMATS = Path(__file__).parent / "formats"
TOP_KEYS = ("task", "version", "description", "format", "data", "file_type", "columns", "records", "expand",
            "json_fields", "id", "protein", "instruction", "reference", "choices", "split", "metadata")
PROTEIN_KEYS = ("sequence", "id", "coords")
RULE_KEYS = ("field", "template", "value", "fence", "regex", "map", "letter", "index")
_FENCE = re.compile(r"```(?:[^\n`]*\n)?(.*?)```", re.DOTALL)  # an optional language tag, then the block
# An answer that names an option by letter: "B", "b", "(B)", "B.", "B)", "Answer: B", "(B) kinase", "B. kinase".
_LETTER = re.compile(r"^(?:(?:answer|option)\s*(?:is\s*)?:?\s*)?\(?([A-Za-z])(?:\)|[.:]|\s|$)", re.IGNORECASE)
_TASK_NAME = re.compile(r"[\w.-]+")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}\s]+)\}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a mapping with one is refused instead."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # `<<: *anchor` merges keys that the mapping's own may override
            key = key_node.value
            if key in seen:
                raise DataError(f"{node.start_mark.name}, line {key_node.start_mark.line + 1}",
                                f"key {key!r} is written twice", "Keep one of them.")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise DataError(str(path), "task mapping not found", "Give the path of a YAML task mapping (docs/data.md).")
    try:
        with path.open(encoding="utf-8") as handle:
            document = yaml.load(handle, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise DataError(str(path), f"not valid YAML ({err})", "Fix the YAML syntax.") from None
    if not isinstance(document, dict):
        raise DataError(str(path), "a task mapping must be a YAML object of keys", "Start from docs/data.md's example.")
    return document


def shipped_formats() -> dict[str, str]:
    """{format name: its description} of the mappings shipped for peers' released formats."""
    return {p.stem: read_yaml(p).get("description", "") for p in sorted(FORMATS.glob("*.yaml"))}


@dataclass(frozen=True)
class Rule:
    """How one part of a sample is read from a record: a field, a template over fields, or a constant."""

    key: str  # the mapping key it came from, for messages ("protein.sequence")
    field: str | None = None
    template: str | None = None
    value: Any = None
    fence: bool = False
    regex: re.Pattern | None = None
    map: dict | None = None
    letter: bool = False
    index: int | None = None  # the number of the first option, when a reference names an option by number

    def read(self, record: dict, options: tuple[str, ...] | None = None) -> Any:
        """The rule's value for a record (None where its field is absent or empty); MappingProblem otherwise."""
        if self.field is not None:
            value = lookup(record, self.field)
        elif self.template is not None:
            value = self._fill(record, options)
        else:
            value = self.value
        if value is None or value == "":
            return None
        if self.fence or self.regex is not None:
            value = self._extract(value)
        if self.map is not None and isinstance(value, (str, int, float, bool)):
            value = self.map.get(str(value), value)  # keys as text: a CSV value is always text
        return value

    def _fill(self, record: dict, options: tuple[str, ...] | None) -> str:
        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name is None:
                return match.group(0)[0]  # {{ or }}
            if name == "options":
                if options is None:
                    raise MappingProblem("{options} is used, but the mapping gives no choices")
                return option_lines(options)
            value = lookup(record, name)
            if value is None or value == "":
                raise MappingProblem(f"the template's field {name!r} is missing or empty")
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

        return _PLACEHOLDER.sub(substitute, self.template)

    def _extract(self, value: Any) -> str:
        source = f"field {self.field!r}" if self.field else "the template's text"
        if not isinstance(value, str):
            raise MappingProblem(f"{source} is {type(value).__name__}, not text to search")
        if self.fence:
            found = _FENCE.search(value)
            if found is None:
                raise MappingProblem(f"{source} holds no ``` fenced block: {value[:60]!r}")
            return found.group(1)
        found = self.regex.search(value)
        if found is None:
            raise MappingProblem(f"{source} does not match the regex {self.regex.pattern!r}: {value[:60]!r}")
        return found.group(1) if self.regex.groups else found.group(0)


class MappingProblem(Exception):
    """A rule that cannot read a record; `TaskMapping` adds the YAML key, the data file and the record."""


def parse_rule(key: str, spec: Any, where: str) -> Rule:
    """A rule from its YAML form (a field name, or an object); DataError naming the key otherwise."""
    if isinstance(spec, str):
        return Rule(key, field=spec)
    if not isinstance(spec, dict):
        raise DataError(where, f"key {key!r} must be a field name or an object with field, template or value, "
                               f"got {type(spec).__name__}", "docs/data.md, 'Task mappings', lists the forms.")
    unknown = sorted(set(spec) - set(RULE_KEYS))
    if unknown:
        raise DataError(where, f"key {key!r} has unknown setting(s) {', '.join(unknown)}",
                        f"Use {', '.join(RULE_KEYS)}.")
    sources = [s for s in ("field", "template", "value") if s in spec]
    if len(sources) != 1:
        raise DataError(where, f"key {key!r} needs exactly one of field, template or value",
                        f"got {', '.join(sources) or 'none'}")
    for name in ("field", "template", "regex"):
        if name in spec and not isinstance(spec[name], str):
            raise DataError(where, f"key {key!r}: {name} must be text", "")
    if "map" in spec and not isinstance(spec["map"], dict):
        raise DataError(where, f"key {key!r}: map must be an object {{from: to}}", "")
    translations = {str(k): v for k, v in spec.get("map", {}).items()}
    for source, target in translations.items():
        if isinstance(target, bool) or target is None:
            raise DataError(where, f"key {key!r}: map sends {source!r} to {target!r}, not text",
                            "Quote the value: YAML reads yes, no, on, off and null unquoted as booleans and null.")
    if "index" in spec and spec["index"] not in (0, 1):
        raise DataError(where, f"key {key!r}: index must be 0 or 1 (the number of the first option)", "")
    try:
        regex = re.compile(spec["regex"]) if "regex" in spec else None
    except re.error as err:
        raise DataError(where, f"key {key!r}: the regex does not compile ({err})", "Fix the pattern.") from None
    return Rule(key, spec.get("field"), spec.get("template"), spec.get("value"), bool(spec.get("fence")), regex,
                translations if "map" in spec else None, bool(spec.get("letter")), spec.get("index"))


class TaskMapping:
    """One YAML task mapping, checked when read; `splits()` reads its data file(s) into samples."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        spec = self._resolved(self.path, read_yaml(self.path))
        where = str(self.path)
        unknown = sorted(set(spec) - set(TOP_KEYS))
        if unknown:
            raise DataError(where, f"unknown key(s) {', '.join(unknown)}", f"A task mapping has {', '.join(TOP_KEYS)}.")
        for required in ("data", "protein", "instruction"):
            if required not in spec:
                raise DataError(where, f"missing key {required!r}", "docs/data.md, 'Task mappings', has an example.")
        self.name = str(spec.get("task") or self.path.stem)
        if not _TASK_NAME.fullmatch(self.name):
            raise DataError(where, f"task name {self.name!r} is not a file name of letters, digits, '_', '-' or '.'",
                            "Name the task with `task:` (it names the predictions file).")
        self.description = str(spec.get("description") or f"mapped by {self.path.name}")
        self.files = self._data_files(spec["data"], where)
        if isinstance(spec["data"], dict) and "split" in spec:
            raise DataError(where, "key 'split' given with one data file per split", "Keep one of the two.")
        self.file_type = spec.get("file_type")
        if self.file_type is not None and self.file_type not in set(FILE_TYPES.values()):
            raise DataError(where, f"unknown file_type {self.file_type!r}", f"Use {', '.join(FILE_TYPES.values())}.")
        self.records = spec.get("records")
        if self.records is not None and not isinstance(self.records, str):
            raise DataError(where, "key 'records' must be the dotted path of the array of records, e.g. data.items", "")
        self.columns = self._names(spec, "columns", where)
        self.json_fields = self._names(spec, "json_fields", where) or []
        self.expand = spec.get("expand")
        if self.expand is not None and not isinstance(self.expand, str):
            raise DataError(where, "key 'expand' must be a field name", "")
        protein = spec["protein"] if isinstance(spec["protein"], dict) and "sequence" in spec["protein"] \
            else {"sequence": spec["protein"]}
        unknown = sorted(set(protein) - set(PROTEIN_KEYS))
        if unknown:
            raise DataError(where, f"key 'protein' has unknown part(s) {', '.join(unknown)}",
                            f"A protein has {', '.join(PROTEIN_KEYS)}.")
        self.rules = {f"protein.{k}": parse_rule(f"protein.{k}", v, where) for k, v in protein.items()}
        for key in ("id", "instruction", "reference", "choices", "split"):
            if key in spec and not (key == "choices" and isinstance(spec[key], list)):
                self.rules[key] = parse_rule(key, spec[key], where)
        self.choice_columns = spec["choices"] if isinstance(spec.get("choices"), list) else None
        self.metadata = self._metadata(spec.get("metadata"), where)
        self.has_references = "reference" in spec
        self.version = self._version(spec)

    @staticmethod
    def _resolved(path: Path, spec: dict) -> dict:
        """The mapping with the shipped format it names (`format:`) underneath it; `protein` merges key by key."""
        if "format" not in spec:
            return spec
        name = spec["format"]
        base_path = FORMATS / f"{name}.yaml"
        if not isinstance(name, str) or not base_path.is_file():
            raise DataError(str(path), f"unknown format {name!r}",
                            f"Shipped formats: {', '.join(shipped_formats())} (sepit data formats).")
        base = read_yaml(base_path)
        merged = {**base, **spec, "format": name}
        if isinstance(base.get("protein"), dict) and isinstance(spec.get("protein"), dict):
            merged["protein"] = {**base["protein"], **spec["protein"]}
        if "data" in spec and "split" in base and isinstance(spec["data"], dict) and "split" not in spec:
            del merged["split"]  # one file per split replaces the format's split rule
        return merged

    def _data_files(self, data: Any, where: str) -> dict[str | None, Path]:
        """{split or None: data file}; None where the split comes from the records."""
        named = data if isinstance(data, dict) else {None: data}
        files = {}
        for split, name in named.items():
            if not isinstance(name, str):
                raise DataError(where, "key 'data' must be a file name, or an object {split: file name}", "")
            path = (self.path.parent / name).resolve()
            if not path.is_file():
                raise DataError(where, f"key 'data': data file {name!r} not found (looked for {path})",
                                "Paths are relative to the mapping's folder; download the benchmark's file there.")
            files[split] = path
        return files

    @staticmethod
    def _names(spec: dict, key: str, where: str) -> list[str] | None:
        names = spec.get(key)
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise DataError(where, f"key {key!r} must be a list of field names", "")
        return names

    @staticmethod
    def _metadata(spec: Any, where: str) -> dict[str, str]:
        if spec is None:
            return {}
        if isinstance(spec, list) and all(isinstance(f, str) for f in spec):
            return {f.split(".")[-1]: f for f in spec}
        if isinstance(spec, dict) and all(isinstance(f, str) for f in spec.values()):
            return dict(spec)
        raise DataError(where, "key 'metadata' must be a list of field names, or an object {name: field}", "")

    def _version(self, spec: dict) -> str:
        """The user's label plus a hash of the resolved mapping's rules and of every data file's bytes: any change
        shows, and the same file and rules give the same version wherever the file lies."""
        rules = {k: v for k, v in spec.items() if k not in ("data", "description")}
        digest = hashlib.sha256(json.dumps(rules, sort_keys=True, default=str).encode())
        for split, path in sorted(self.files.items(), key=lambda item: str(item[0])):
            digest.update(f"{split}:{sha256_file(path)}".encode())
        label = spec.get("version")
        return (f"{label}/" if label is not None else "") + "sha256:" + digest.hexdigest()[:12]

    # --- reading -----------------------------------------------------------------------------------------

    def splits(self, problems: list[DataError] | None = None) -> dict[str, list[InstructionSample]]:
        """{split: samples}. The first problem is raised; given `problems`, each bad record's error goes there
        and the record is left out."""
        splits: dict[str, list[InstructionSample]] = defaultdict(list)
        checker = RecordChecker(self.name, references=self.has_references)
        for file_split, path in self.files.items():
            records = read_records(path, self.file_type, self.columns, self.records, problems)
            for number, place, record, element in self._expanded(records):
                where = f"{self.path.name} -> {path.name}, {place}"
                try:
                    row = self.generic_record(self._decoded(record, where), number, file_split, where, element)
                    where += f" (record {row['id']!r})"
                    split, sample = checker.sample(row, where, f"{path.name}, {place}")
                except DataError as err:
                    raise_or_collect(err, problems)
                    continue
                splits[split].append(sample)
        return dict(splits)

    def _expanded(self, records: Iterator[tuple[Any, str, dict]]) -> Iterator[tuple[Any, str, dict, int | None]]:
        """With `expand: FIELD`, one record per element of the record's list FIELD, the element's fields over the
        record's (OPI's test files: one question, several {input, output} instances), with the element's number
        from 1; None for a record without the list, 0 for one whose list is empty (reported, not dropped)."""
        for number, place, record in records:
            items = record.get(self.expand) if self.expand else None
            if not isinstance(items, list):
                yield number, place, record, None
            elif not items:
                yield number, place, record, 0
            for k, item in enumerate(items or (), 1):
                extra = item if isinstance(item, dict) else {"value": item}
                yield f"{number}.{k}", f"{place}, {self.expand} {k}", {**record, **extra}, k

    def _decoded(self, record: dict, where: str) -> dict:
        """The record with its `json_fields` read as JSON literals (Evolla's TSV quotes each question)."""
        if not self.json_fields:
            return record
        record = dict(record)
        for name in self.json_fields:
            if isinstance(record.get(name), str):
                try:
                    record[name] = json.loads(record[name])
                except json.JSONDecodeError as err:
                    raise DataError(where, f"key 'json_fields': field {name!r} is not a JSON literal ({err.msg})",
                                    f"Remove {name!r} from json_fields if it is plain text.") from None
        return record

    def generic_record(self, record: dict, number: Any, file_split: str | None, where: str,
                       element: int | None = None) -> dict:
        """One data record as a generic task record (docs/data.md), which `RecordChecker` then validates.
        `element`: the number of an expanded record's element (`_expanded`)."""
        def read(key: str, options: tuple[str, ...] | None = None) -> Any:
            rule = self.rules.get(key)
            if rule is None:
                return None
            try:
                return rule.read(record, options)
            except MappingProblem as problem:
                raise DataError(where, f"key {key!r}: {problem}", f"Check the rule for {key!r} in {self.path}.")

        def required(key: str, value: Any, what: str) -> Any:
            if value is None:
                rule = self.rules[key]
                source = f"field {rule.field!r}" if rule.field else "its value"
                raise DataError(where, f"key {key!r}: {source} is missing or empty", f"Every record needs {what}.")
            return value

        if element == 0:
            raise DataError(where, f"key 'expand': field {self.expand!r} is an empty list, so the record asks nothing",
                            "Remove the record, or give it its instances.")
        if "id" in self.rules:
            sample_id = str(required("id", read("id"), "its id"))
            if element:  # the instances of one record share its id
                sample_id += f".{element}"
        else:
            sample_id = str(number)
        if file_split and len(self.files) > 1:  # files of different splits may reuse ids
            sample_id = f"{file_split}/{sample_id}"
        where += f" (record {sample_id!r})"
        split = file_split or read("split") or "test"
        sequence = required("protein.sequence", read("protein.sequence"), "a protein sequence")
        if not isinstance(sequence, str):
            raise DataError(where, f"key 'protein.sequence': the sequence is {type(sequence).__name__}, not text", "")
        sequence = "".join(sequence.split())  # sequences wrapped over lines, as in FASTA blocks
        try:
            make_protein("checked", sequence)
        except DataError as err:
            rule = self.rules["protein.sequence"]
            source = f" (field {rule.field!r})" if rule.field else ""
            raise DataError(where, f"key 'protein.sequence'{source}: {err.problem}", err.fix) from None
        protein_id = read("protein.id")
        protein_id = str(protein_id) if protein_id is not None else \
            "seq-" + hashlib.sha256(sequence.upper().encode()).hexdigest()[:12]
        choices = self._choices(record, read, where)
        reference = required("reference", read("reference", choices), "its answer") if self.has_references else None
        if reference is not None and (self.rules["reference"].letter or self.rules["reference"].index is not None):
            reference = self._option(reference, choices, where)
        if reference is not None and not isinstance(reference, str):
            reference = str(reference)
        instruction = required("instruction", read("instruction", choices), "an instruction")
        metadata = {name: value for name, path in self.metadata.items()
                    if (value := lookup(record, path)) not in (None, "")}
        return {"id": sample_id, "split": str(split),
                "protein": {"id": protein_id, "sequence": sequence, "coords": read("protein.coords")},
                "instruction": instruction, "reference": reference, "choices": list(choices) if choices else None,
                "metadata": metadata}

    def _choices(self, record: dict, read, where: str) -> tuple[str, ...] | None:
        """The record's options; None where the mapping has none. A mapped question whose options are all empty is an
        error: one task holds closed questions only, or open ones only."""
        if self.choice_columns is not None:
            values = [lookup(record, column) for column in self.choice_columns]
        elif "choices" in self.rules:
            values = read("choices")
            if isinstance(values, dict):
                values = self._lettered(values, where)
            elif isinstance(values, str):
                raise DataError(where, "key 'choices': the field holds text, not a list of options",
                                "Map a list field, an {A: ..., B: ...} field, or a list of columns.")
        else:
            return None
        values = [v for v in values or () if v not in (None, "")]  # fewer options leave cells empty
        if not values:
            raise DataError(where, "key 'choices': the record has no options", "Give every question its options.")
        return tuple(str(v) for v in values)

    @staticmethod
    def _lettered(options: dict, where: str) -> list:
        """The values of an {A: ..., B: ...} object in letter order (any other keys: in file order)."""
        letters = [str(k).strip().upper() for k in options]
        if sorted(letters) == list(OPTION_LETTERS[:len(letters)]):
            return [value for _, value in sorted(zip(letters, options.values()))]
        if all(len(k) == 1 and k in OPTION_LETTERS for k in letters):
            raise DataError(where, f"key 'choices': option letters {', '.join(letters)} skip a letter",
                            "Name the options A, B, C, ... without gaps.")
        return list(options.values())

    def _option(self, answer: Any, choices: tuple[str, ...] | None, where: str) -> str:
        """The option a letter ("B", "(b)", "B.", "Answer: B", "(B) kinase") or a number ("2", "2.0") names."""
        if not choices:
            raise DataError(where, "key 'reference' names an option, but the record has no choices",
                            "Map the choices too.")
        rule = self.rules["reference"]
        if rule.letter:
            found = _LETTER.match(str(answer).strip())
            position = OPTION_LETTERS.find(found.group(1).upper()) if found else -1
        else:
            number = float(answer) if re.fullmatch(r"\s*-?\d+(\.0*)?\s*", str(answer)) else None
            position = int(number) - rule.index if number is not None else -1
        if not 0 <= position < len(choices):
            form = "a letter" if rule.letter else f"an option number from {rule.index}"
            raise DataError(where, f"key 'reference': {answer!r} is not {form} among {len(choices)} options",
                            "Check the answer field.")
        return choices[position]
