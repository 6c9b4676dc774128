"""Generation: one sample at a time, Hugging Face's batched `generate`, and ours, on the same samples and model.

Three paths, all greedy with the same `max_new_tokens`, so their new token ids must be equal sample by sample
(the script exits with status 1 when any differs: a speed-up that changes answers is a bug):
- one at a time: one `generate` call per sample (batch 1), what a loop over a dataset does;
- Hugging Face batched: `generate` on left-padded batches of `--batch-size`, sorted by spliced length (the
  tool a user would otherwise pick);
- ours: `sepit bench`'s path, `ProteinLanguageModel.generate_tokens` (continuous batching over a slot KV
  cache, `sepit.models.decoding`) with `--batch-size` rows decoding together.

Models: the tiny SEPIT of configs/sepit/tiny/stage2.yaml (tiny:llm upcycled into 4 experts, tiny:esm2, 16
kernels, 256-residue window) with random weights, whose answers never end on eos (every answer is
`--max-new-tokens` long), and with `--checkpoint` a trained one, whose answers stop at eos at mixed lengths.
`--official` also runs each with the official inference's span (the 256-token left-padded Llama-2 prompt and
all 1024 encoder positions, `OfficialLayout`), where prefill is most of the work.

    .venv/bin/python bench/generation.py [--samples 256] [--batch-size 32] [--max-new-tokens 32]
        [--checkpoint runs/demo/runs/tiny/stage2/checkpoints/last.ckpt] [--official]
"""

from __future__ import annotations

import argparse
import dataclasses
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
    from sepit.models.moe import ExpertSettings, upcycle_to_moe
    from sepit.models.network import SplicedLanguageModel
    from sepit.model_paths import resolve_model_path

    llm_path = resolve_model_path("tiny:llm")
    tokenizer = AutoTokenizer.from_pretrained(llm_path, local_files_only=True)
    llm = AutoModelForCausalLM.from_pretrained(llm_path, local_files_only=True, dtype=torch.float32)
    torch.manual_seed(seed)  # structure module and projector
    encoder = StructureAwareESM(esm2_from_checkpoint(resolve_model_path("tiny:esm2")), num_kernels=16, window=256)
    model = SplicedLanguageModel(encoder, llm, tokenizer, projector="mlp")
    upcycle_to_moe(model.llm, ExpertSettings(num_experts=4, top_k=1))
    return model.eval()


def sp14_test_samples(n: int, seed: int = 0) -> list:
    """`n` test samples drawn at random from all SP14 tasks (open and closed), so lengths vary as in a run."""
    from sepit.tasks import suites

    pool = [s for task in suites()["sp14"].tasks for s in task.samples("test")]
    if n > len(pool):
        raise SystemExit(f"--samples {n}: SP14 has {len(pool)} test samples")
    return random.Random(seed).sample(pool, n)


def with_official_span(model):
    """The same weights with the official inference's span: the Llama-2 prompt left-padded to 256 tokens and all
    1024 encoder positions spliced in (`OfficialLayout`; the pad token and bias masking stay ours). The work per
    sample is the official one; the answers mean nothing for weights trained otherwise."""
    from sepit.models.network import OfficialLanguageModel

    official = OfficialLanguageModel(model.encoder, model.llm, model.tokenizer)
    official.projector = model.projector
    official.encoder.pad_to = 1024
    return official.eval()


def ours(model, samples, config, batch_size: int) -> dict:
    answers = [ids for ids, _ in model.generate_tokens(samples, config, batch_size)]
    return {(s.task, s.id): ids.tolist() for s, ids in zip(samples, answers)}


def hf_batched(model, samples, config, batch_size: int) -> dict:
    lengths = model.spliced_lengths(samples)
    ordered = [s for _, s in sorted(zip(lengths, samples), key=lambda pair: -pair[0])]
    out = {}
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start:start + batch_size]
        for sample, (ids, _) in zip(batch, model._hf_generate(batch, config)):
            out[sample.task, sample.id] = ids.tolist()
    return out


def one_at_a_time(model, samples, config) -> dict:
    return {(s.task, s.id): model._hf_generate([s], config)[0][0].tolist() for s in samples}


def timed(function, *args) -> tuple[dict, float]:
    start = time.perf_counter()
    out = function(*args)
    return out, time.perf_counter() - start


def measure(model, samples, config, batch_size: int) -> dict:
    """The three paths on one model: seconds, samples/s, new tokens/s, identical rows; and ours with one new
    token, the encoder and prefill that ours pays before decoding (it bounds our ratio to one at a time)."""
    with torch.inference_mode():
        one_at_a_time(model, samples[:2], config)  # warm-up: first-call allocations and lazy imports
        fast, fast_s = timed(ours, model, samples, config, batch_size)
        hf, hf_s = timed(hf_batched, model, samples, config, batch_size)
        slow, slow_s = timed(one_at_a_time, model, samples, config)
        _, first_s = timed(ours, model, samples, dataclasses.replace(config, max_new_tokens=1), batch_size)
    new_tokens = sum(map(len, slow.values()))
    return {"seconds": {"one_at_a_time": slow_s, "hf_batched": hf_s, "ours": fast_s, "ours_first_token": first_s},
            "new_tokens": new_tokens, "stopped_early": sum(len(ids) < config.max_new_tokens for ids in slow.values()),
            "identical": {"hf_batched": sum(hf[k] == slow[k] for k in slow), "ours": sum(fast[k] == slow[k] for k in slow)},
            "first_difference": next(({"sample": list(k), "path": "ours" if fast[k] != slow[k] else "hf_batched",
                                       "tokens": fast[k] if fast[k] != slow[k] else hf[k], "alone": slow[k]}
                                      for k in slow if fast[k] != slow[k] or hf[k] != slow[k]), None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (a tiny model gains nothing from more, and on a busy machine "
                             "their synchronisation dominates: 8x slower at load 5 on 2 cores)")
    parser.add_argument("--checkpoint", help="also a stage-1/2 checkpoint from `sepit fit` (e.g. the demo's "
                        "runs/tiny/stage2/checkpoints/last.ckpt): trained answers end at eos at mixed lengths")
    parser.add_argument("--official", action="store_true", help="also each model with the official span")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    from sepit.allocator import keep_freed_memory
    from sepit.interface import GenerationSettings

    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as every `sepit` command does (sepit/allocator.py), for all three paths
    models = {"random weights": lambda: tiny_sepit(args.seed)}
    if args.checkpoint:
        from sepit.checkpoints.model import load_checkpoint

        models["trained"] = lambda: load_checkpoint(args.checkpoint)[0].eval()
    if args.official:
        models.update({f"{name}, official span": (lambda build=build: with_official_span(build()))
                       for name, build in list(models.items())})
    samples = sp14_test_samples(args.samples, args.seed)
    config = GenerationSettings(max_new_tokens=args.max_new_tokens)  # greedy
    print(f"generation: {args.samples} SP14 test samples, greedy, max_new_tokens {args.max_new_tokens}, "
          f"batch {args.batch_size}, CPU, {torch.get_num_threads()} torch thread(s)")
    print(describe(machine()))
    results, failed = {}, False
    for name, build in models.items():
        r = results[name] = measure(build(), samples, config, args.batch_size)
        s = r["seconds"]
        print(f"\n{name}: {r['new_tokens']} new tokens, {r['stopped_early']} answers ended on eos early")
        rows = [[path, s[key], args.samples / s[key], r["new_tokens"] / s[key], s["one_at_a_time"] / s[key],
                 s["hf_batched"] / s[key], f"{r['identical'].get(key, args.samples)}/{args.samples}"]
                for path, key in [("one at a time (generate, batch 1)", "one_at_a_time"),
                                  ("Hugging Face batched generate", "hf_batched"),
                                  ("ours (continuous batching)", "ours")]]
        print(table(["path", "seconds", "samples/s", "new tokens/s", "x one-at-a-time", "x HF batched",
                     "identical"], rows))
        print(f"ours with one new token (encoder and prefill only): {s['ours_first_token']:.3g} s, so even with free "
              f"decoding ours would be at most {s['one_at_a_time'] / s['ours_first_token']:.3g}x one at a time")
        if r["first_difference"] is not None:
            failed = True
            d = r["first_difference"]
            print(f"FAIL: outputs differ, e.g. {d['sample']}: {d['path']} {d['tokens']} vs alone {d['alone']}",
                  file=sys.stderr)
    save_json(args.json, {"benchmark": "generation", "machine": machine(), "settings": vars(args),
                          "results": results})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
