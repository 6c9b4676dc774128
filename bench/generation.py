"""Batched generation vs one sample at a time, on the tiny SEPIT model.

The engine path is what `sepit bench` runs for a SEPIT checkpoint: samples sorted by length
(`length_sorted_batches`), each batch spliced, left-padded and decoded with the KV cache in one `generate`
call (`ProteinLanguageModel.generate_token_ids`). The baseline is one sample per `generate` call (batch
size 1). Both decode greedily with the same model and `max_new_tokens`, so their new token
ids must be equal sample by sample: the script exits with status 1 when any differs, since a speed-up that
changes answers is a bug, not a speed-up.

The model is the tiny SEPIT of configs/sepit/tiny/stage2.yaml (tiny:llm upcycled into 4 experts, tiny:esm2,
16 kernels, 256-residue window) with random weights: no checkpoint is needed. Random weights never say eos,
so every answer is `--max-new-tokens` long; `--checkpoint` takes a trained one, whose answers stop early.

    .venv/bin/python bench/generation.py [--samples 256] [--batch-size 32] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.common` from `python bench/...`

import torch

from bench.common import describe, machine, save_json, table


def tiny_sepit(seed: int = 0):
    """The architecture of the tiny stage-2 config (every FFN upcycled into 4 experts, top-1), weights drawn
    from `seed` (the LLM and ESM-2 files are seeded themselves)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()  # the embedding-resize notice and loading bars would bury the table
    logging.disable_progress_bar()

    from sepit.models.encoder import StructureAwareESM, esm2_from_checkpoint
    from sepit.models.moe import upcycle_to_moe
    from sepit.models.splice import ProteinLanguageModel
    from sepit.models.tiny import resolve_model_path

    llm_path = resolve_model_path("tiny:llm")
    tokenizer = AutoTokenizer.from_pretrained(llm_path, local_files_only=True)
    llm = AutoModelForCausalLM.from_pretrained(llm_path, local_files_only=True, dtype=torch.float32)
    torch.manual_seed(seed)  # structure module and projector
    encoder = StructureAwareESM(esm2_from_checkpoint(resolve_model_path("tiny:esm2")), num_kernels=16, window=256)
    model = ProteinLanguageModel(encoder, llm, tokenizer, connector="mlp")
    upcycle_to_moe(model.llm, num_experts=4, top_k=1)
    return model.eval()


def sp14_test_samples(n: int, seed: int = 0) -> list:
    """`n` test samples drawn at random from all SP14 tasks (open and closed), so lengths vary as in a run."""
    from sepit.tasks import suites

    pool = [s for task in suites()["sp14"].tasks for s in task.samples("test")]
    if n > len(pool):
        raise SystemExit(f"--samples {n}: SP14 has {len(pool)} test samples")
    return random.Random(seed).sample(pool, n)


def batched(model, samples, config, batch_size: int) -> tuple[dict, float]:
    from sepit.evaluation.predict import length_sorted_batches

    out, start = {}, time.perf_counter()
    for batch in length_sorted_batches(samples, batch_size):
        for sample, ids in zip(batch, model.generate_token_ids(batch, config)):
            out[sample.task, sample.id] = ids.tolist()
    return out, time.perf_counter() - start


def one_at_a_time(model, samples, config) -> tuple[dict, float]:
    out, start = {}, time.perf_counter()
    for sample in samples:
        out[sample.task, sample.id] = model.generate_token_ids([sample], config)[0].tolist()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (a tiny model gains nothing from more, and on a busy machine "
                             "their synchronisation dominates: 8x slower at load 5 on 2 cores)")
    parser.add_argument("--checkpoint", help="a stage-1/2 checkpoint from `sepit fit` instead of random weights "
                        "(e.g. the demo's runs/tiny/stage2/checkpoints/last.ckpt): trained answers end at eos at "
                        "different lengths, so a batch also decodes rows that are already done")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    from sepit.models.interface import GenerationConfig

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from sepit.models.sepit import load_checkpoint

        model = load_checkpoint(args.checkpoint)[0].eval()
    else:
        model = tiny_sepit(args.seed)
    samples = sp14_test_samples(args.samples, args.seed)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)  # greedy
    with torch.inference_mode():
        one_at_a_time(model, samples[:2], config)  # warm-up: first-call allocations and lazy imports
        fast, fast_s = batched(model, samples, config, args.batch_size)
        slow, slow_s = one_at_a_time(model, samples, config)
    same = sum(fast[key] == slow[key] for key in slow)
    new_tokens = sum(map(len, slow.values()))
    stopped = sum(len(ids) < args.max_new_tokens for ids in slow.values())  # ended on eos before the limit

    print(f"generation: {args.samples} SP14 test samples, greedy, max_new_tokens {args.max_new_tokens}, "
          f"{new_tokens} new tokens in all ({stopped} answers ended on eos early); "
          f"{args.checkpoint or 'tiny SEPIT, random weights'}, CPU, "
          f"{torch.get_num_threads()} torch thread(s)")
    print(describe(machine()))
    print(table(["path", "batch", "seconds", "samples/s"], [
        ["one at a time (batch 1)", 1, slow_s, args.samples / slow_s],
        ["batched, length-sorted, KV cache", args.batch_size, fast_s, args.samples / fast_s]]))
    print(f"speed-up: {slow_s / fast_s:.2f}x; identical greedy outputs: {same}/{args.samples}")
    save_json(args.json, {"benchmark": "generation", "machine": machine(), "settings": vars(args),
                          "seconds": {"one_at_a_time": slow_s, "batched": fast_s},
                          "samples_per_s": {"one_at_a_time": args.samples / slow_s,
                                            "batched": args.samples / fast_s},
                          "speedup": slow_s / fast_s, "identical": same, "new_tokens": new_tokens})
    if same != args.samples:
        first = next(key for key in slow if fast[key] != slow[key])
        print(f"FAIL: {args.samples - same} outputs differ, e.g. {first}: batched {fast[first]} vs "
              f"alone {slow[first]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
