"""Training throughput per SEPIT stage: tokens/s and peak memory of `sepit fit` on each config.

Each config runs as its own `sepit fit --config X --trainer.max_steps N` process (so peak memory is that
stage's alone), from the current directory (relative model and data paths resolve as for `sepit fit`) but
writing only to a temporary folder, with validation off and `init_from: null` where the config has it:
throughput does not depend on the weights, and every stage runs without the previous one's checkpoint. A
callback from this file (`TokenThroughput`) times each training batch, optimizer step included, after
`--warmup` batches, and counts what the batch fed the model:

    text tokens   stages 1-2: the LLM's prompt + answer + eos token ids, unpadded (<protein> counted once;
                  a text-only baseline's sequence is in here); stage 0: the caption encoder's tokens
    residues      protein residues the encoder read, after cropping to the window (ESM-2 adds BOS/EOS)

tokens/s = (text tokens + residues) / timed seconds, per process. Peak memory: the process's peak RSS
(getrusage), and on GPUs torch.cuda.max_memory_allocated over the training.

    .venv/bin/python bench/training.py [--steps 20] [--configs configs/sepit/tiny/stage{0,1,2}.yaml]
    .venv/bin/python bench/training.py --configs configs/sepit/paper/stage1.yaml --accelerator gpu
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.common` from `python bench/...`

import lightning as L
import torch

from bench.common import REPO, describe, machine, run, save_json, table

TINY = [f"configs/sepit/tiny/stage{n}.yaml" for n in (0, 1, 2)]


def batch_tokens(pl_module: L.LightningModule, batch) -> tuple[int, int]:
    """(text tokens, residues) of one batch of a stage module, from the module's own tokenizers."""
    items = list(batch)
    if hasattr(pl_module, "objectives"):  # stage 0: protein-caption pairs
        captions = pl_module.objectives.caption_encoder
        ids = captions.tokenizer([p.caption for p in items], truncation=True, max_length=captions.max_length)
        window = pl_module.objectives.encoder.window
        return sum(map(len, ids["input_ids"])), sum(min(len(p.protein.sequence), window) for p in items)
    model = pl_module.model  # stages 1-2 and the trainable baselines: a ProteinLanguageModel
    text = sum(len(ids) for ids in model.collate(items)["input_ids"])
    if model.encoder is None:
        return text, 0
    return text, sum(min(len(s.protein.sequence), model.encoder.window) for s in items)


class TokenThroughput(L.Callback):
    """Times training batches after `warmup_steps` and writes tokens, seconds and peak memory to `output`."""

    def __init__(self, output: str, warmup_steps: int = 5):
        self.output, self.warmup_steps = output, warmup_steps
        self.seconds, self.steps, self.samples, self.text, self.residues = 0.0, 0, 0, 0, 0
        self._start: float | None = None

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # CUDA runs ahead of Python: time finished work only

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = None
        if batch_idx >= self.warmup_steps:
            self._sync(pl_module)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is None:
            return
        self._sync(pl_module)
        self.seconds += time.perf_counter() - self._start  # counting below is not timed
        text, residues = batch_tokens(pl_module, batch)
        self.steps, self.samples = self.steps + 1, self.samples + len(batch)
        self.text, self.residues = self.text + text, self.residues + residues

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        cuda = pl_module.device.type == "cuda"
        record = {"steps": self.steps, "seconds": self.seconds, "samples": self.samples, "text_tokens": self.text,
                  "residues": self.residues, "batch_size": getattr(trainer.datamodule, "batch_size", None),
                  "devices": trainer.world_size, "precision": str(trainer.precision),
                  "torch_threads": torch.get_num_threads(),
                  # ru_maxrss is in KiB on Linux: the peak of this whole process, model loading included
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_gpu_mib": torch.cuda.max_memory_allocated(pl_module.device) / 2**20 if cuda else None}
        Path(self.output).write_text(json.dumps(record))


def fit_once(config: Path, root: Path, args) -> dict:
    """One `sepit fit` run of `config`, its outputs under `root`; the TokenThroughput record."""
    import yaml

    output = root / "throughput.json"
    callback = {"class_path": "bench.training.TokenThroughput",
                "init_args": {"output": str(output), "warmup_steps": args.warmup}}
    # Run from the caller's directory, as `sepit fit` would be, so relative model and data paths resolve; but
    # write nothing there: no logger, no checkpoints (a paper-scale one is gigabytes), the config's callbacks
    # (ModelCheckpoint, LearningRateMonitor, LossTrend) replaced by the one that measures.
    command = [sys.executable, "-m", "sepit.cli", "fit", "--config", str(config),
               "--trainer.max_steps", str(args.warmup + args.steps), "--trainer.limit_val_batches", "0",
               "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
               "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
               f"--trainer.callbacks={json.dumps([callback])}"]
    if "init_from" in (yaml.safe_load(config.read_text())["model"].get("init_args") or {}):
        command += ["--model.init_args.init_from", "null"]
    for option in ("accelerator", "devices", "batch_size"):
        value = getattr(args, option)
        if value is not None:
            command += [f"--{'data.init_args' if option == 'batch_size' else 'trainer'}.{option}", str(value)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    _, command_s = run(command, f"sepit fit --config {config}", env=env)
    return {**json.loads(output.read_text()), "command_s": command_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=TINY, help="stage configs (default: the tiny ones)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per config")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocation, lazy init)")
    parser.add_argument("--accelerator", help="override the config's (cpu, gpu)")
    parser.add_argument("--devices", help="override the config's")
    parser.add_argument("--batch-size", dest="batch_size", type=int, help="override the config's, per device")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS per process (default: torch's choice)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    results = {}
    for name in args.configs:
        with tempfile.TemporaryDirectory(prefix="sepit-training-") as tmp:
            config = Path(name) if Path(name).exists() else REPO / name  # the defaults from anywhere
            results[name] = fit_once(config.resolve(), Path(tmp), args)

    print(f"training: sepit fit, {args.steps} timed steps after {args.warmup} warm-up steps per config")
    print(describe(machine()))
    rows = []
    for name, r in results.items():
        tokens = r["text_tokens"] + r["residues"]
        rows.append([name, r["batch_size"], r["precision"], r["steps"] / r["seconds"], r["samples"] / r["seconds"],
                     r["text_tokens"] / r["seconds"], r["residues"] / r["seconds"], tokens / r["seconds"],
                     round(r["peak_rss_mib"]), None if r["peak_gpu_mib"] is None else round(r["peak_gpu_mib"]),
                     r["torch_threads"]])
    print(table(["config", "batch", "precision", "steps/s", "samples/s", "text tok/s", "residues/s", "tokens/s",
                 "peak RSS MiB", "peak GPU MiB",
                 "threads"], rows))
    save_json(args.json, {"benchmark": "training", "machine": machine(), "settings": vars(args), "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
