"""Paper shapes on one GPU, random weights: our generation against Hugging Face's batched `generate`, and a
stage-1 training step.

The model: ESM-2 650M's shape (33 layers, 1280 wide, 20 heads) with the structure module (128 kernels), the
MLP projector, and a Llama of TinyLlama-1.1B's shape (22 layers, 2048 wide, 32 heads, 4 KV heads, FFN 5632,
32,000 ids), all drawn at random on the device (no weights to download; tiny:llm's tokenizer writes the
prompts). Samples: `--prompt-tokens` of SP14 text around `<protein>` and a random protein of `--residues`.

- Generation, in `--dtype`: `--new-tokens` greedy tokens per sample at each of `--batch-sizes`, ours
  (`generate_tokens`: continuous batching over the slot KV cache, `sepit bench`'s path) and Hugging Face's
  batched `generate` (`bench/generation.py`'s `hf_batched`: left-padded, sorted by spliced length). New
  tokens/s and peak GPU memory per path; rows equal between the two (in bf16 a near-tie can flip with the
  batch's shapes, as it can between Hugging Face's own batched and single `generate`: counted, not failed).
- Training: `--train-steps` steps of stage 1 (every part trains, bf16 autocast over float32 weights, AdamW) on
  batches of `--train-batch` samples (answers: SP14 training answers): tokens/s (LLM positions + residues)
  and model FLOPs utilisation: 6 x (the LLM's parameters x its positions + the encoder's and projector's x
  residues) per second, attention not counted, over `--peak-tflops`.

    .venv/bin/python bench/gpu.py --json runs/bench/gpu.json   # an H100/H200: a few minutes
    .venv/bin/python bench/gpu.py --tiny --device cpu           # the same code on tiny shapes (tests run this)
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

PAPER = {"esm": (33, 1280, 20), "llm": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32,
                                           num_key_value_heads=4, intermediate_size=5632, vocab_size=32000),
         "kernels": 128}
TINY = {"esm": (2, 32, 4), "llm": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128, vocab_size=4200), "kernels": 16}


def build(shapes: dict, device: str):
    """The random SEPIT-shaped model on `device`, float32."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sepit.models.encoder import StructureAwareESM, esm2_tiny
    from sepit.models.network import SplicedLanguageModel
    from sepit.model_paths import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("tiny:llm"), local_files_only=True)
    torch.manual_seed(0)
    with torch.device(device):
        llm = LlamaForCausalLM(LlamaConfig(**shapes["llm"], max_position_embeddings=4096, tie_word_embeddings=False,
                                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                           attn_implementation="sdpa"))
        encoder = StructureAwareESM(esm2_tiny(*shapes["esm"]), num_kernels=shapes["kernels"], window=1022)
        model = SplicedLanguageModel(encoder, llm, tokenizer, projector="mlp")
    return model.to(device)


def synthetic_samples(n: int, prompt_tokens: int, residues: int, tokenizer, seed: int = 0) -> list:
    """`n` samples: SP14 training answers as instruction text (about `prompt_tokens` tokens around `<protein>`),
    random proteins of `residues` residues."""
    from sepit.data.protein import STANDARD_RESIDUES, make_protein
    from sepit.data.sample import make_sample
    from sepit.tiny.corpus import training_samples

    rng = random.Random(seed)
    texts = [s.reference for s in training_samples()]
    out = []
    for i in range(n):
        words: list[str] = []
        while len(tokenizer(" ".join(words)).input_ids) < prompt_tokens:
            words += rng.choice(texts).split()
        half = len(words) // 2
        protein = make_protein(f"p{i}", "".join(rng.choice(STANDARD_RESIDUES) for _ in range(residues)))
        instruction = " ".join(words[:half]) + " <protein> " + " ".join(words[half:])
        out.append(make_sample(f"s{i}", "paper_shapes", protein, instruction, rng.choice(texts)))
    return out


def synchronized(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def generation(model, samples, new_tokens: int, batch_sizes: list[int], device: str) -> list[dict]:
    from bench.generation import hf_batched, ours
    from sepit.interface import GenerationSettings

    config = GenerationSettings(max_new_tokens=new_tokens)
    rows = []
    with torch.inference_mode():
        ours(model, samples[:2], config, 2)  # warm-up: kernels, allocator
        hf_batched(model, samples[:2], config, 2)
        for batch_size in batch_sizes:
            answers = {}
            for path, run in (("ours", ours), ("hf_batched", hf_batched)):
                peak_memory_reset(device)
                synchronized(device)
                start = time.perf_counter()
                answers[path] = run(model, samples, config, batch_size)
                synchronized(device)
                seconds = time.perf_counter() - start
                tokens = sum(map(len, answers[path].values()))
                rows.append({"batch": batch_size, "path": path, "seconds": seconds, "new_tokens": tokens,
                             "new_tokens_per_s": tokens / seconds, "peak_gib": peak_memory_gib(device)})
            same = sum(answers["ours"][k] == answers["hf_batched"][k] for k in answers["ours"])
            for row in rows[-2:]:
                row["equal_rows"] = f"{same}/{len(samples)}"
    return rows


def training(model, samples, steps: int, batch: int, device: str, peak_tflops: float) -> dict:
    """Stage-1 steps: every part trains, bf16 autocast on CUDA (float32 on a CPU), AdamW."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    batches = [model.collate(samples[i:i + batch]) for i in range(0, batch * (steps + 1), batch)]
    peak_memory_reset(device)
    seconds, positions, residues = 0.0, 0, 0
    for step, data in enumerate(batches):
        data = move_data_to_device(data, device)
        synchronized(device)
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            loss = model(data)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronized(device)
        if step:  # the first step warms up
            seconds += time.perf_counter() - start
            counted = _counts(model, data)
            positions, residues = positions + counted[0], residues + counted[1]
    llm_params = sum(p.numel() for p in model.llm.parameters() if p.requires_grad)
    protein_params = sum(p.numel() for p in parameters) - llm_params  # the encoder and the projector
    flops = 6 * (llm_params * positions + protein_params * residues) / seconds
    return {"steps": steps, "batch": batch, "seconds": seconds, "tokens_per_s": (positions + residues) / seconds,
            "trainable_params": llm_params + protein_params, "model_tflops": flops / 1e12,
            "mfu": flops / (peak_tflops * 1e12), "peak_gib": peak_memory_gib(device), "loss": loss.item()}


def _counts(model, batch) -> tuple[int, int]:
    """The LLM positions a step computed (prompt, spliced protein and answer, unpadded), the residues ESM-2 read."""
    with torch.no_grad():
        _, attention_mask, _ = model.embed(batch, padding_side="right")
    return int(attention_mask.sum()), int((batch["tokens"] >= 4).sum())  # ESM-2's ids 0-3: cls, pad, eos, unk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                        help="generation's weights (training autocasts to bf16 over float32 weights on CUDA)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: a smoke run of this script on a CPU")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--residues", type=int, default=400)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    from transformers.utils import logging

    logging.set_verbosity_error()
    device, shapes = args.device, TINY if args.tiny else PAPER
    start = time.perf_counter()
    model = build(shapes, device)
    samples = synthetic_samples(max(args.samples, args.train_batch * (args.train_steps + 1)), args.prompt_tokens,
                                args.residues, model.tokenizer)
    print(f"paper shapes{' (tiny)' if args.tiny else ''} on {device}: built in {time.perf_counter() - start:.0f} s")
    print(describe(machine()))
    record = {"training": training(model, samples, args.train_steps, args.train_batch, device, args.peak_tflops)}
    t = record["training"]
    print(f"\nstage-1 training, {t['steps']} steps of {t['batch']}:")
    print(table(["trainable params", "tokens/s", "model TFLOP/s", "MFU", "peak GiB"],
                [[t["trainable_params"], t["tokens_per_s"], t["model_tflops"], t["mfu"], t["peak_gib"]]]))
    model = model.to(getattr(torch, args.dtype)).eval()
    record["generation"] = generation(model, samples[:args.samples], args.new_tokens, args.batch_sizes, device)
    print(f"\ngeneration, {args.samples} samples, {args.new_tokens} new tokens, {args.dtype}:")
    print(table(["batch", "path", "seconds", "new tokens/s", "peak GiB", "equal rows"],
                [[r["batch"], r["path"], r["seconds"], r["new_tokens_per_s"], r["peak_gib"], r["equal_rows"]]
                 for r in record["generation"]]))
    save_json(args.json, {"benchmark": "gpu", "machine": machine(), "settings": vars(args), "results": record})
    return 0


if __name__ == "__main__":
    sys.exit(main())
