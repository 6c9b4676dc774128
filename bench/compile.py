"""`torch.compile` on one decoding step: does it pay on a CPU for the tiny LLM?

The easiest case for the compiler: the dense tiny LLM (tiny:llm, before its FFNs are upcycled into experts,
whose routing would break the graph), static shapes (every slot decodes, the keys span the whole
pre-allocated cache, the new keys and values written at a tensor-held column), the model's own layers. One
step = embed, the decoder layers, the final norm, lm_head, greedy pick. Reported: eager ms per step, the first
compiled call (the compilation), compiled ms per step, and whether both pick the same tokens.

    .venv/bin/python bench/compile.py [--rows 32] [--capacity 512] [--steps 200] [--cpp-wrapper] [--threads 1]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.common` from `python bench/...`

import torch

from bench.common import describe, machine, save_json, table


class _StaticCache:
    """Writes each layer's new keys and values at `column` of preallocated buffers and returns the buffers."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor]):
        self.keys, self.values, self.column = keys, values, None

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx].index_copy_(2, self.column, key_states)
        self.values[layer_idx].index_copy_(2, self.column, value_states)
        return self.keys[layer_idx], self.values[layer_idx]


def decoding_step(llm, cache: _StaticCache, cache_keyword: str):
    def step(ids, mask, position_ids, column):
        cache.column = column
        hidden = llm.model.embed_tokens(ids)[:, None]
        embeddings = llm.model.rotary_emb(hidden, position_ids)
        for layer in llm.model.layers:
            hidden = layer(hidden, attention_mask=mask, position_ids=position_ids, position_embeddings=embeddings,
                           **{cache_keyword: cache})
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return llm.lm_head(llm.model.norm(hidden[:, -1])).argmax(dim=-1)
    return step


def per_step_ms(step, inputs, steps: int) -> float:
    for _ in range(5):
        step(*inputs)
    start = time.perf_counter()
    for _ in range(steps):
        step(*inputs)
    return (time.perf_counter() - start) / steps * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--capacity", type=int, default=512, help="cached positions every row attends over")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cpp-wrapper", action="store_true", help="inductor's C++ wrapper instead of Python's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    import torch._inductor.config as inductor
    from transformers import AutoModelForCausalLM

    from sepit.models.decoding import _cache_keyword
    from sepit.model_paths import resolve_model_path

    torch.set_num_threads(args.threads)
    inductor.cpp_wrapper = args.cpp_wrapper
    llm = AutoModelForCausalLM.from_pretrained(resolve_model_path("tiny:llm"), local_files_only=True,
                                               dtype=torch.float32).eval()
    config = llm.config
    heads = config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    shape = (args.rows, heads, args.capacity, head_dim)
    generator = torch.Generator().manual_seed(0)
    keys = [torch.randn(shape, generator=generator) for _ in llm.model.layers]
    values = [torch.randn(shape, generator=generator) for _ in llm.model.layers]
    step = decoding_step(llm, _StaticCache(keys, values), _cache_keyword(llm.model.layers[0]))
    column = args.capacity - 1
    inputs = (torch.randint(0, config.vocab_size, (args.rows,), generator=generator),
              torch.zeros(args.rows, 1, 1, args.capacity), torch.full((args.rows, 1), column),
              torch.tensor([column]))
    print(f"one decoding step of tiny:llm ({config.num_hidden_layers} layers, hidden {config.hidden_size}), "
          f"{args.rows} rows x {args.capacity} cached positions, {torch.get_num_threads()} thread(s)")
    print(describe(machine()))
    with torch.inference_mode():
        eager_ms = per_step_ms(step, inputs, args.steps)
        compiled = torch.compile(step, dynamic=False)
        start = time.perf_counter()
        same = torch.equal(compiled(*inputs), step(*inputs))
        compile_s = time.perf_counter() - start
        compiled_ms = per_step_ms(compiled, inputs, args.steps)
    print(table(["eager ms/step", "compile s", "compiled ms/step", "compiled / eager", "same tokens"],
                [[eager_ms, compile_s, compiled_ms, compiled_ms / eager_ms, same]]))
    save_json(args.json, {"benchmark": "compile", "machine": machine(), "settings": vars(args),
                          "results": {"eager_ms": eager_ms, "compile_s": compile_s, "compiled_ms": compiled_ms,
                                      "same_tokens": same}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
