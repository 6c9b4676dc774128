"""Peak memory of loading a checkpoint for `sepit bench`: the lean path (parameters built on the meta device,
the memory-mapped tensors taking their place in the target dtype) against building in float32 and loading.

A scaled-up random checkpoint is written once: the converted official golden model (tests/data/official_golden)
with its LLM widened and deepened (`--hidden`, `--layers`). Each load runs in a fresh process; its peak RSS is
its peak resident memory while loading (Linux's VmHWM, reset just before), less its resident memory just before
(Python, torch, transformers and this package imported: "a bare torch process"), compared with the bytes of the
weights in the loaded dtype. Every weight is read once after loading, as the first forward pass would: the
memory-mapped checkpoint pages then count, as they should.

    .venv/bin/python bench/loading.py --hidden 2048 --layers 12
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys
import torch
from transformers import AutoTokenizer
from sepit.checkpoints.model import DTYPES, load_checkpoint
from sepit.checkpoints.stage import TOKENIZER_DIR, build_from_record, load_into, read_stage_checkpoint
path, way, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from the current RSS
before = status("VmRSS")
if way == "lean":
    model, _ = load_checkpoint(path, dtype=dtype)
else:  # the path before: build in float32, load, then cast
    record, state = read_stage_checkpoint(path, (1, 2))
    model = build_from_record(record, AutoTokenizer.from_pretrained(f"{path.rsplit('/', 1)[0]}/{TOKENIZER_DIR}"))
    load_into(model, state, "model.", path)
    model = model.to(DTYPES[dtype])
with torch.no_grad():  # read every weight once, as the first forward pass will (mapped pages load lazily)
    touched = sum(float(p.sum()) for p in model.parameters())
peak = status("VmHWM")
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"before_mb": before / 1024, "peak_mb": peak / 1024, "weights_mb": weights / 2**20,
                  "params": sum(p.numel() for p in model.parameters())}))
"""


def write_checkpoint(folder: Path, hidden: int, layers: int) -> Path:
    """The golden model converted, its LLM scaled up and re-initialised at random, saved as a stage-2 .ckpt."""
    import torch
    from transformers import AutoTokenizer

    from sepit.commands.convert import official
    from sepit.checkpoints.stage import TOKENIZER_DIR, build_from_record, read_stage_checkpoint

    small = folder / "golden" / "sepit.ckpt"
    official(REPO / "tests/data/official_golden/model", small)
    record, _ = read_stage_checkpoint(small, (1, 2))
    config = record["llm_config"]
    config.update(hidden_size=hidden, intermediate_size=int(hidden * 2.6875), num_hidden_layers=layers,
                  num_attention_heads=max(hidden // 128, 1), num_key_value_heads=max(hidden // 128, 1))
    config.pop("head_dim", None)
    torch.manual_seed(0)
    model = build_from_record(record, AutoTokenizer.from_pretrained(small.parent / TOKENIZER_DIR))
    path = folder / "big" / "sepit.ckpt"
    path.parent.mkdir(parents=True)
    shutil.copytree(small.parent / TOKENIZER_DIR, path.parent / TOKENIZER_DIR)
    torch.save({"sepit": record, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def measure(path: Path, way: str, dtype: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), way, dtype], capture_output=True, text=True,
                          check=True, cwd=REPO)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["over_bare_mb"] = result["peak_mb"] - result["before_mb"]
    result["ratio"] = result["over_bare_mb"] / result["weights_mb"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sepit-loading-") as tmp:
        path = write_checkpoint(Path(tmp), args.hidden, args.layers)
        size_mb = path.stat().st_size / 2**20
        runs = [(way, dtype, measure(path, way, dtype)) for way in ("lean", "float32 build")
                for dtype in ("float32", "bfloat16")]
    rows = [[way, dtype, f"{r['params'] / 1e6:.0f}M", round(r["weights_mb"]), round(r["before_mb"]),
             round(r["peak_mb"]), round(r["over_bare_mb"]), round(r["ratio"], 2)] for way, dtype, r in runs]
    print(f"checkpoint: {size_mb:.0f} MB on disk (float32)")
    print(table(["load", "dtype", "params", "weights MB", "bare MB", "peak MB", "over bare MB", "x weights"], rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "checkpoint_mb": size_mb,
                                         "runs": [{"load": w, "dtype": d, **r} for w, d, r in runs]}, indent=2))


if __name__ == "__main__":
    main()
