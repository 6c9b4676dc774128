"""`sepit bench`: predict (resumable, multi-process) then score, into one output folder.

    <output>/predictions/<task>.jsonl   one row per sample (docs/evaluation.md)
    <output>/journal/                   rows of a run in progress; merged into predictions/ when done
    <output>/samples/<task>.jsonl       per-sample scoring logs
    <output>/results.json               schema_version 1
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import yaml

from sepit.data.errors import DataError
from sepit.data.sample import InstructionSample
from sepit.evaluation.predictions import PredictionStore, mismatch
from sepit.evaluation.results import now
from sepit.evaluation.scoring import ScoringSettings, summary_table, task_grounding
from sepit.evaluation.shards import Shard, finish_lock, launched_as_one_of_many, shard_of
from sepit.interface import GenerationSettings, ProteinLLM
from sepit.registry import MODELS
from sepit.tasks import Task, resolve_tasks


PRECISIONS = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
SECRET_WORDS = ("key", "secret", "password", "passwd", "auth", "credential")


def redact(value: Any) -> Any:
    """Model arguments fit for a results file: values under names that look like credentials are masked,
    at any depth (an API key nested in a client config included)."""
    if isinstance(value, dict):
        return {k: "***" if _secret(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def _secret(name: str) -> bool:
    name = name.lower()
    return any(word in name for word in SECRET_WORDS) or name.endswith("token")  # not max_new_tokens


def check_reusable(done: dict[tuple[str, str], dict], samples: dict[str, list[InstructionSample]],
                   likelihood_tasks: list[str], logprobs: bool = False) -> None:
    """Saved rows are reused only for the very samples they answered, with what scoring will need."""
    for name, task_samples in samples.items():
        for sample in task_samples:
            row = done.get((name, sample.id))
            if row is None:
                continue
            problem = mismatch(row, sample)
            if problem is None and name in likelihood_tasks and "loglikelihoods" not in row:
                problem = "it was predicted without the log-likelihoods that --scoring.closed_methods asks for"
            if problem is None and logprobs and "token_logprobs" not in row:
                problem = "it was predicted without the per-token log-probabilities that --generation.logprobs asks for"
            if problem:
                raise DataError(f"saved prediction of task {name!r}, sample {sample.id!r}",
                                f"cannot be reused: {problem}",
                                "The task or the run settings changed since; pass --fresh to predict again "
                                "(or use another --output).")


def build_model(spec: str, model_args: dict[str, Any] | None = None) -> ProteinLLM:
    """A registered model by name, a YAML file `{model: NAME, args: {...}}`, or a checkpoint (.ckpt) from
    `sepit fit` (SEPIT or a trainable baseline, told apart by its architecture record); `model_args` override."""
    args: dict[str, Any] = {}
    if spec.endswith(".ckpt"):
        from sepit.checkpoints.stage import read_stage_checkpoint, registered_model_for

        record, _ = read_stage_checkpoint(spec, stages=(1, 2))
        spec, args = registered_model_for(record), {"checkpoint": spec}
    elif spec.endswith((".yaml", ".yml")):
        path = Path(spec)
        if not path.is_file():
            raise DataError(spec, "model config file not found", "Give a registered model name or a YAML file.")
        config = yaml.safe_load(path.read_text()) or {}
        if not isinstance(config, dict) or not isinstance(config.get("model"), str):
            raise DataError(spec, "a model config needs a 'model' name", "Write `model: NAME` and `args: {...}`.")
        spec, args = config["model"], dict(config.get("args") or {})
    args.update(model_args or {})
    factory = MODELS.get(spec)
    if "dtype" in args and not _takes(factory, "dtype"):
        raise DataError(f"model {spec!r}", "has no precision setting (no `dtype` argument)",
                        "Leave out --precision for this model.")
    unknown = [name for name in args if not _takes(factory, name)]
    if unknown:
        known = ", ".join(inspect.signature(factory).parameters)
        raise DataError(f"model {spec!r}", f"takes no argument {', '.join(map(repr, unknown))}",
                        f"Fix --model_args; its arguments are: {known or 'none'}.")
    model = factory(**args)
    if not isinstance(model, ProteinLLM):
        raise DataError(f"model {spec!r}", f"built a {type(model).__name__}, not a ProteinLLM",
                        "A model plug-in must implement sepit.interface.ProteinLLM.")
    return model


def _takes(factory: Any, name: str) -> bool:
    """Whether a model's constructor takes the keyword `name` (or any keyword)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True  # cannot tell: let the call say
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def bench(model: str, tasks: list[str] | str, output: Path, devices: int = 1, batch_size: int = 8,
          model_args: dict[str, Any] | None = None, generation: GenerationSettings = GenerationSettings(),
          scoring: ScoringSettings = ScoringSettings(), split: str = "test", limit: int | None = None,
          accelerator: str = "auto", strategy: str = "auto", fresh: bool = False, num_nodes: int = 1,
          shard: str | None = None, precision: Literal["bf16", "fp16", "fp32"] | None = None) -> None:
    """Predict the tasks' samples with a model, then score them into <output>/results.json.

    Re-running the same command resumes: samples already in <output> are not predicted again, whatever the
    number of devices, nodes or shards (docs/guides.md has SLURM and torchrun examples).

    Args:
        model: a registered model name (an unknown name lists the known ones), a YAML file
            {model: NAME, args: {...}}, or a SEPIT checkpoint (.ckpt) from `sepit fit`.
        tasks: task names, suite names (e.g. sp14), generic JSONL task files or YAML task mappings of a benchmark's
            released files (docs/data.md); a list or comma-separated.
        output: the run folder.
        devices: processes (GPUs, or CPU processes) predicting in parallel.
        batch_size: rows decoded together. Samples are sorted by length; a model that batches continuously
            (SEPIT and the trainable baselines) gets several batches per call and refills finished rows.
        model_args: keyword arguments for the model's constructor.
        generation: decoding settings; part of each row's key, so changing them never reuses old rows.
        scoring: metric profile, tokens, closed-set methods, leakage report, bootstrap (`ScoringSettings`).
        split: which split to predict.
        limit: predict only the first N samples of each task (by id): for smoke runs.
        accelerator: auto, cpu or gpu.
        strategy: auto (ddp on GPUs, ddp_fork on CPU when devices > 1) or any Lightning strategy name.
        fresh: discard earlier predictions in <output> and start over.
        num_nodes: machines the run spans (Lightning's multi-node DDP; SLURM's or torchrun's environment says
            which node this is). Every process must see <output>.
        precision: the weights' dtype (the model's `dtype` argument); default the dtype they were saved in.
            A checkpoint is loaded straight into it, never first in float32.
        shard: K/N: predict only share K of N of the samples, an independent job of a scheduler array writing
            into the same <output>. The job that finds every row present scores; the others say what is missing
            and exit 0.
    """
    from sepit.evaluation.predict import run_predict
    from sepit.evaluation.results import score_and_write

    started, clock = now(), time.perf_counter()
    output = Path(output)
    if batch_size < 1:
        raise DataError("--batch_size", f"must be 1 or more, got {batch_size}", "Set e.g. 8; less if memory runs out.")
    generation.check()
    if generation.batch_size is not None:
        raise DataError("--generation.batch_size", "is the run's --batch_size", f"Give --batch_size {generation.batch_size}.")
    if limit is not None and limit < 0:
        raise DataError("--limit", f"must be 0 or more, got {limit}", "Leave it out to predict every sample.")
    share = Shard.parse(shard) if shard else None
    if share and fresh:
        raise DataError("--fresh", "would discard the rows of the other shards too", "Leave it out of a shard "
                        "job; clear the folder once, before the array starts.")
    chosen = resolve_tasks(tasks.split(",") if isinstance(tasks, str) else tasks)
    if precision is not None:
        if precision not in PRECISIONS:
            raise DataError("--precision", f"unknown precision {precision!r}", f"Use {', '.join(PRECISIONS)}.")
        model_args = {**(model_args or {}), "dtype": PRECISIONS[precision]}
    llm = build_model(model, model_args)
    card = llm.describe()
    likelihood_tasks = _likelihood_tasks(llm, card.name, chosen, scoring, generation)
    # The split is part of the key: rows of another split in the same folder are never mixed in.
    key = json.dumps({"generation": generation.hash(), "split": split})
    store = PredictionStore(output, card.fingerprint, hashlib.sha256(key.encode()).hexdigest()[:16])
    if fresh:
        for folder in (store.folder, store.journals, output / "samples"):
            shutil.rmtree(folder, ignore_errors=True)

    split_samples = {t.name: t.samples(split) for t in chosen}  # built once; the task's order is its hash's
    samples = {name: sorted(task_samples, key=lambda s: s.id)[:limit] for name, task_samples in split_samples.items()}
    _check_scoring_inputs(chosen, samples, scoring, split)
    done = store.done()
    check_reusable(done, samples, likelihood_tasks, generation.logprobs)
    everything = [s for task_samples in samples.values() for s in task_samples]
    pending = [s for s in everything if (s.task, s.id) not in done and (share is None or share.owns(s))]
    total = len(everything)
    missing = sum((s.task, s.id) not in done for s in everything)
    print(f"{card.name}: {total} samples in {len(chosen)} tasks, {missing} without a prediction, "
          f"{len(pending)} to go here" + (f" (shard {share.index} of {share.count})" if share else "")
          + f" on {devices} device(s) x {num_nodes} node(s)")
    # Processes launched by a scheduler all enter the collective run, even one that found nothing pending:
    # rank 0's list decides (`PendingSamples`).
    if pending or num_nodes > 1 or launched_as_one_of_many():
        llm.prepare(chosen)
        if not run_predict(llm, pending, store, generation, batch_size, devices, accelerator, strategy,
                           likelihood_tasks, num_nodes, everything, share.label if share else ""):
            return  # not global rank 0 (ddp launched this process): rank 0 scores
        done = store.done()
    lost = [s for s in everything if (s.task, s.id) not in done]
    if share and any(share.owns(s) for s in lost):
        raise DataError(str(output), f"shard {share.index} of {share.count} still owes "
                        f"{sum(share.owns(s) for s in lost)} samples after predicting", "Re-run the same command.")
    if lost and share:
        owing = sorted({shard_of(s.task, s.id, share.count) for s in lost})
        print(f"{len(lost)} of {total} samples still have no prediction, owed by shard(s) "
              f"{', '.join(map(str, owing))} of {share.count}: the shard that finishes last scores "
              f"(or run `sepit bench` on {output} without --shard once they are done)")
        return
    if lost:
        raise DataError(str(output), f"{len(lost)} samples have no prediction after predicting (e.g. "
                        f"{[f'{s.task}/{s.id}' for s in lost[:3]]})", "Re-run the same command to predict them.")
    with finish_lock(output) as holder:  # one job merges and scores; any other stops here
        if holder is not None:
            print(f"every sample has its prediction; {holder} is merging and scoring {output}")
            return
        done = store.done()
        if share and not store.journals_read and (output / "results.json").is_file():
            print(f"every sample has its prediction; another shard has merged and scored {output}")
            return
        store.finish(done.values())
        rows = {name: [done[name, s.id] for s in task_samples] for name, task_samples in samples.items()}
        config = {"generation": generation.record(), "generation_hash": store.generation_hash, "split": split,
                  "limit": limit, "batch_size": batch_size, "devices": devices, "num_nodes": num_nodes,
                  "shards": share.count if share else None,
                  "model_args": redact(model_args or {}), "tasks": [t.name for t in chosen]}
        # The rows were checked against these samples before predicting (check_reusable) or made from them.
        document = score_and_write(output / "results.json", rows, card.record(), config, started, scoring, split,
                                   {t.name: t for t in chosen}, split_samples, rows_checked=True)
        print(summary_table(document["tasks"]))
        print(f"wrote {output / 'results.json'} in {time.perf_counter() - clock:.1f} s")


def _check_scoring_inputs(tasks: list[Task], samples: dict[str, list], scoring: ScoringSettings, split: str) -> None:
    """What scoring will read, checked before predicting: the training set `--scoring.train` names, and the open
    tasks' references grounded (bad annotations, or `--scoring.entities require` on a task whose references name
    nothing). A problem stops here rather than after hours of predictions."""
    if scoring.train and scoring.leakage and split == "test":
        from sepit.evaluation.training_set import named_training_set

        named_training_set(scoring.train)
    if scoring.entities == "off":
        return
    for task in tasks:
        if task.kind == "open" and task.has_references and samples[task.name]:
            rows = [{"id": s.id, "reference": s.reference} for s in samples[task.name]]
            task_grounding(task.name, rows, {s.id: s for s in samples[task.name]}, scoring.entities == "require")


def _likelihood_tasks(llm: ProteinLLM, name: str, tasks: list[Task], scoring: ScoringSettings,
                      generation: GenerationSettings) -> list[str]:
    """The closed tasks scored by log-likelihood; refused, before anything is predicted, for a model (named
    `name` in its card) that cannot give what the settings ask."""
    chosen = sorted(t.name for t in tasks if t.kind == "closed" and scoring.method_for(t.name) == "loglikelihood")
    if chosen and not llm.supports_loglikelihood:
        raise DataError(f"model {name!r}", "cannot score choices by log-likelihood",
                        "Choose last_match or choice in --scoring.closed_methods for " + ", ".join(chosen) + ".")
    if generation.logprobs and not llm.supports_logprobs:
        raise DataError(f"model {name!r}", "cannot report per-token log-probabilities",
                        "Leave out --generation.logprobs for this model.")
    return chosen
