"""Predicting with Lightning: length-sorted batches sharded over processes, rows journalled as they come.

Each process gets every world-size-th batch of one length-sorted list, so no sample is seen twice and none is
padded in (Lightning's distributed sampler is off: `DistributedSampler` pads by repeating samples). Each
process appends its rows to its own journal; the files are the gathering mechanism, which is what makes a
killed run resumable at any device count (the output folder must be on a filesystem every process sees).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
import warnings
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, TQDMProgressBar

from sepit.data.sample import InstructionSample
from sepit.evaluation.predictions import Journal, PredictionStore, prediction_row
from sepit.interface import GenerationSettings, ProteinLLM
from sepit.quiet import quiet_lightning


def length_sorted_batches(samples: Sequence[InstructionSample], batch_size: int) -> list[list[InstructionSample]]:
    """Longest first, so padding is small within a batch and an out-of-memory error shows up at once."""
    ordered = sorted(samples, key=lambda s: (-(len(s.protein.sequence) + len(s.instruction)), s.task, s.id))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def _as_is(batch: list[InstructionSample]) -> list[InstructionSample]:
    return batch


class PendingSamples(L.LightningDataModule):
    """Length-sorted calls of `samples_per_call` samples (the unit that is journalled, and so resumed).

    Processes started separately (other nodes, torchrun, SLURM) each read the output folder at their own moment,
    so their lists of pending samples may differ: global rank 0's list is broadcast and every process shards that
    one. `known` is every sample a process can look up by (task, id)."""

    def __init__(self, samples: Sequence[InstructionSample], samples_per_call: int,
                 known: Sequence[InstructionSample] | None = None):
        super().__init__()
        self.pending = [(s.task, s.id) for s in samples]
        self.known = {(s.task, s.id): s for s in (known if known is not None else samples)}
        self.samples_per_call = samples_per_call

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # samples are plain data; the model moves its own tensors

    def predict_dataloader(self) -> torch.utils.data.DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        pending = self.trainer.strategy.broadcast(self.pending, src=0) if world > 1 else self.pending
        batches = length_sorted_batches([self.known[key] for key in pending], self.samples_per_call)
        shard = batches[rank::world]
        if world > 1:  # which node and rank predicts what, in each process's own log
            print(f"{socket.gethostname()} rank {rank} of {world}: {sum(map(len, shard))} samples in {len(shard)} "
                  "calls", flush=True)
        # Every process runs the same number of steps (Lightning refuses an empty loader): short shards get
        # empty batches, which predict nothing.
        shard += [[]] * (max(1, -(-len(batches) // world)) - len(shard))
        # A list is a map-style dataset: DataLoader needs only len() and indexing.
        return torch.utils.data.DataLoader(shard, batch_size=None, collate_fn=_as_is)


class Predictor(L.LightningModule):
    """Wraps any ProteinLLM for `trainer.predict`; one prediction row per sample."""

    def __init__(self, model: ProteinLLM, generation: GenerationSettings, generation_hash: str,
                 likelihood_tasks: Sequence[str] = ()):
        super().__init__()
        self.model, self.generation, self.generation_hash = model, generation, generation_hash
        self.likelihood_tasks = set(likelihood_tasks)
        card = model.describe()
        self.name, self.fingerprint = card.name, card.fingerprint

    def predict_step(self, batch: list[InstructionSample], batch_idx: int) -> list[dict]:
        if not batch:
            return []
        start = time.perf_counter()
        answers = self.model.answer(batch, self.generation)
        # A model that answers by likelihood may return the choices' scores with its answers: not asked twice.
        scored = [i for i, s in enumerate(batch) if s.task in self.likelihood_tasks and s.choices is not None
                  and "loglikelihoods" not in answers[i][1]]
        likelihoods = dict(zip(scored, self.model.loglikelihood([batch[i] for i in scored]))) if scored else {}
        seconds = (time.perf_counter() - start) / len(batch)
        rows = []
        for i, (sample, (text, extra)) in enumerate(zip(batch, answers, strict=True)):
            extra = {**extra, "seconds": round(seconds, 6)}
            if i in likelihoods:
                extra["loglikelihoods"] = [float(v) for v in likelihoods[i]]
            rows.append(prediction_row(sample, text, self.name, self.fingerprint, self.generation_hash, extra))
        return rows


class JournalWriter(BasePredictionWriter):
    """Appends each batch's rows to this process's journal before the next batch starts."""

    def __init__(self, store: PredictionStore, shard: str = ""):
        super().__init__(write_interval="batch")
        self.store, self.shard = store, shard
        self.journal: Journal | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.journal = self.store.journal(trainer.global_rank, self.shard)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        self.journal.append(prediction)

    def on_predict_end(self, trainer, pl_module) -> None:
        self.journal.close()
        trainer.strategy.barrier()  # every process's rows are on disk before rank 0 reads them


class SamplesPerSecond(TQDMProgressBar):
    """Lightning's bar counts batches; people want samples per second."""

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        super().on_predict_epoch_start(trainer, pl_module)
        self._samples, self._start = 0, time.perf_counter()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._samples += len(batch)
        rate = self._samples / max(time.perf_counter() - self._start, 1e-9)
        self.predict_progress_bar.set_postfix(samples_per_s=f"{rate:.1f}")


def run_predict(model: ProteinLLM, samples: Sequence[InstructionSample], store: PredictionStore,
                generation: GenerationSettings, batch_size: int, devices: int, accelerator: str, strategy: str,
                likelihood_tasks: Sequence[str] = (), num_nodes: int = 1,
                known: Sequence[InstructionSample] | None = None, shard: str = "") -> bool:
    """Predict `samples` into the store's journals; True in the process that should go on (global rank 0).
    `known`: every sample of the run (another process's pending list may name one this process has done)."""
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if strategy == "auto":
        # ddp_fork forks this process's workers; processes launched by torchrun or SLURM, or on other nodes, are
        # joined by plain ddp (Lightning reads their environment).
        strategy = "auto" if devices * num_nodes == 1 else (
            "ddp" if accelerator == "gpu" or num_nodes > 1 else "ddp_fork")
    # Batches come whole from the dataset, so Lightning cannot (and need not) infer sample indices.
    warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
    quiet_lightning()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # no banner and tips
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False,
                        callbacks=[JournalWriter(store, shard), SamplesPerSecond()])
    generation = dataclasses.replace(generation, batch_size=batch_size)  # rows decoded together
    predictor = Predictor(model, generation, store.generation_hash, likelihood_tasks)
    samples_per_call = batch_size * max(1, model.batches_per_call)
    trainer.predict(predictor, datamodule=PendingSamples(samples, samples_per_call, known), return_predictions=False)
    return trainer.is_global_zero
