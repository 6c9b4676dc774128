"""The training data of each SEPIT stage, from a registered task suite (e.g. the bundled `sp14`) or from a
SEPIT-Data folder in the official release layout (docs/data.md):

    stage 0   protein-caption pairs (one per protein)       suite: its caption task     SEPIT-Data: stage0/
    stage 1   caption instructions                          suite: its caption task     SEPIT-Data: stage1/
    stage 2   every instruction                             suite: all its tasks        SEPIT-Data: stage2/

Batches are `ItemBatch`es of `CaptionPair`s or `InstructionSample`s: the LightningModule tokenizes them, because
the tokenizers belong to the model. The data layer stays model-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import lightning as L
import torch

from sepit.data.errors import DataError
from sepit.data.sample import CaptionPair, InstructionSample

Item = CaptionPair | InstructionSample


class ItemBatch:
    """The items of one batch, opaque to Lightning's hooks that walk batches for tensors: they recurse into lists
    and dataclasses, and refuse frozen ones (FSDP's precision plugin does), while the items hold no tensors."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Item]):
        self.items = tuple(items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, index):
        return self.items[index]


def stage_items(source: str, stage: int, split: str) -> list[Item]:
    """The items of one stage and split; [] where the source has no such split (e.g. no SEPIT-Data valid)."""
    if Path(source).is_dir():
        from sepit.data.sepit_format import SepitData

        data = SepitData(source)
        if stage == 0:
            return data.caption_pairs(split) if split == "train" else []
        official = {"train": "train", "test": "qa_test"}.get(split)
        if official is None or (f"stage{stage}", official) not in data.files():
            return []
        return data.samples(f"stage{stage}", official)

    from sepit.tasks import suites

    known = suites()
    if source not in known:
        raise DataError(source, "neither a task suite nor a SEPIT-Data folder",
                        f"Give a suite name ({', '.join(sorted(known)) or 'none registered'}) or the folder "
                        "holding pdb.h5 and stage0/ stage1/ stage2/.")
    suite = known[source]
    if stage == 2:
        return [sample for task in suite.tasks for sample in task.samples(split)]
    if suite.caption_task is None:
        raise DataError(f"suite {source!r}", f"names no caption task, which stage {stage} trains on",
                        "Set `caption_task` in the suite, or train on a SEPIT-Data folder.")
    if stage == 0:
        return suite.caption_pairs(split)
    return suite.task(suite.caption_task).samples(split)


def task_balanced_sampler(items: Sequence[Item], power: float) -> torch.utils.data.WeightedRandomSampler:
    """Draws with task shares proportional to (task size)^power; caption pairs form one task."""
    tasks = [getattr(item, "task", "") for item in items]
    sizes: dict[str, int] = {}
    for task in tasks:
        sizes[task] = sizes.get(task, 0) + 1
    weights = torch.tensor([sizes[t] ** (power - 1.0) for t in tasks], dtype=torch.double)
    return torch.utils.data.WeightedRandomSampler(weights, num_samples=len(items), replacement=True)


class StageData(L.LightningDataModule):
    """Train, validation and test items of one SEPIT stage."""

    def __init__(self, stage: Literal[0, 1, 2], source: str = "sp14", batch_size: int = 8,
                 eval_batch_size: int | None = None, num_workers: int = 0, task_balance: float = 1.0):
        """
        Args:
            stage: 0 (caption pairs), 1 (caption instructions) or 2 (all instructions).
            source: a registered task suite (train/valid/test splits) or a SEPIT-Data folder (train; test from
                qa_test; no validation split).
            batch_size: training items per batch and device.
            eval_batch_size: validation and test items per batch (default: batch_size).
            num_workers: DataLoader worker processes (the items are already in memory; 0 is usually right).
            task_balance: training items are drawn with task shares proportional to (task size)^task_balance:
                1 shuffles the data as it is; 0 draws every task equally often (a yes/no task of 600 questions
                as often as 3,000 open answers); in between, e.g. 0.5, softens the imbalance. Below 1 the draw
                is with replacement, one epoch = as many items as the split holds.
        """
        if not 0.0 <= task_balance <= 1.0:
            raise DataError("data.init_args.task_balance", f"must be in [0, 1], got {task_balance}",
                            "Set 1 to shuffle the data as it is, 0 to draw every task equally often.")
        super().__init__()
        if stage not in (0, 1, 2):
            raise DataError("data.init_args.stage", f"must be 0, 1 or 2, got {stage}", "Set the stage this config trains.")
        if batch_size < 1:
            raise DataError("data.init_args.batch_size", f"must be 1 or more, got {batch_size}", "Set e.g. 8.")
        self.save_hyperparameters()
        self.stage, self.source = stage, source
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.task_balance = num_workers, task_balance
        self.items: dict[str, list[Item]] = {}

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",), "predict": ("test",)}[stage]
        for split in splits:
            if split not in self.items:
                self.items[split] = stage_items(self.source, self.stage, split)
        if stage == "fit" and not self.items["train"]:
            raise DataError(self.source, f"no training items for stage {self.stage}",
                            "Check the suite's train split or the SEPIT-Data stage folder.")

    def _loader(self, split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        items = self.items[split]
        sampler = task_balanced_sampler(items, self.task_balance) if shuffle and self.task_balance < 1 else None
        return torch.utils.data.DataLoader(  # the list itself is the (map-style) dataset
            items, batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle and sampler is None, sampler=sampler, collate_fn=ItemBatch,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader | list:
        return self._loader("valid", shuffle=False) if self.items.get("valid") else []

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test", shuffle=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # items, not tensors: the module tokenizes and moves them
