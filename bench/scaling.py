"""`sepit bench` on one CPU process vs two (`--devices 2`: Lightning's ddp_fork, chosen by `run_predict`).

Every run predicts the same SP14 test samples (`--tasks sp14 --limit L`, L the smallest limit that gives
`--samples`) with a tiny SEPIT stage-2 checkpoint that the script trains for one step first (the tiny stage-2
config with `init_from: null`: the real architecture, MoE included; speed does not depend on the weights).
Each run is its own `sepit bench` process with a fresh output folder and `--scoring.leakage false`.

Threads: sepit sets none itself; Lightning gives each forked process cpus // processes threads unless
OMP_NUM_THREADS is set. The script sets OMP_NUM_THREADS for every run: two processes get one thread each, and
one process is measured with one thread and with two, since either can be the fair baseline.

Timing: the prediction part is `run_predict` (process start-up for ddp_fork included), timed inside the child
by wrapping it; the whole command (imports, model load, scoring) is timed from outside. The predictions of all
runs must be identical: sharding batches over processes may not change answers.

    .venv/bin/python bench/scaling.py [--samples 1000] [--batch-size 8] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.common` from `python bench/...`

from bench.common import REPO, describe, machine, run, save_json, table

RUNS = (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes, 1 thread each", 2, 1))


def timed_bench(timing_file: str, argv: list[str]) -> None:
    """Child mode: `sepit bench argv` in this process, with the wall time of `run_predict` written to a file."""
    import torch

    import sepit.evaluation.predict as predict
    from sepit.cli import main

    original = predict.run_predict

    def run_predict(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:  # in the launching process only: ddp_fork's workers exit inside `trainer.predict`
            Path(timing_file).write_text(json.dumps({"predict_s": time.perf_counter() - start,
                                                     "torch_threads": torch.get_num_threads()}))

    predict.run_predict = run_predict  # bench.py imports it at call time, so it gets this one
    main(["bench", *argv])


def sepit_command() -> list[str]:
    return [sys.executable, "-m", "sepit.cli"]


def tiny_checkpoint(workdir: Path, env: dict[str, str]) -> Path:
    """One training step of the tiny stage-2 config from random weights; its checkpoint and tokenizer."""
    run([*sepit_command(), "fit", "--config", str(REPO / "configs/sepit/tiny/stage2.yaml"),
         "--model.init_args.init_from", "null", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
         "--data.init_args.batch_size", "2", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"],
        "tiny checkpoint (sepit fit)", cwd=workdir, env=env)
    return workdir / "runs/tiny/stage2/checkpoints/last.ckpt"  # the config's ModelCheckpoint dirpath


def limit_for(samples: int) -> tuple[int, int]:
    """(smallest per-task --limit giving at least `samples` SP14 test samples, the number it gives)."""
    from sepit.tasks import suites

    sizes = [len(task.samples("test")) for task in suites()["sp14"].tasks]
    if samples > sum(sizes):
        raise SystemExit(f"--samples {samples}: SP14 has {sum(sizes)} test samples")
    limit = next(n for n in range(max(sizes) + 1) if sum(min(s, n) for s in sizes) >= samples)
    return limit, sum(min(s, limit) for s in sizes)


def bench_once(checkpoint: Path, output: Path, devices: int, threads: int, args, env: dict[str, str]) -> dict:
    timing = output.with_suffix(".timing.json")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(timing), "--",
               "--model", str(checkpoint), "--tasks", "sp14", "--limit", str(args.limit), "--output", str(output),
               "--devices", str(devices), "--accelerator", "cpu", "--batch_size", str(args.batch_size),
               "--generation.max_new_tokens", str(args.max_new_tokens), "--scoring.leakage", "false"]
    _, command_s = run(command, f"sepit bench --devices {devices}", env={**env, "OMP_NUM_THREADS": str(threads)})
    rows = [json.loads(line) for f in sorted((output / "predictions").glob("*.jsonl"))
            for line in f.read_text().splitlines()]
    answers = sorted((r["task"], r["id"], r["prediction"]) for r in rows)  # "seconds" differs run to run
    return {**json.loads(timing.read_text()), "command_s": command_s, "n": len(rows), "answers": answers}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        timed_bench(argv[1], argv[3:])  # --child FILE -- <sepit bench arguments>
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8, help="sepit bench's default")
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="random weights rarely say eos, so every answer is this long")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    args.limit, total = limit_for(args.samples)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    results = {}
    with tempfile.TemporaryDirectory(prefix="sepit-scaling-") as tmp:
        checkpoint = tiny_checkpoint(Path(tmp), {**env, "OMP_NUM_THREADS": "1"})
        for label, devices, threads in RUNS:
            results[label] = bench_once(checkpoint, Path(tmp) / f"d{devices}t{threads}", devices, threads, args, env)
    same = all(r["answers"] == results[RUNS[0][0]]["answers"] for r in results.values())

    print(f"scaling: sepit bench, tiny SEPIT stage-2 checkpoint, {total} SP14 test samples (--limit {args.limit}), "
          f"batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, CPU")
    print(describe(machine()))
    print(table(["run", "predict s", "samples/s", "whole command s", "torch threads (launcher)"],
                [[label, r["predict_s"], r["n"] / r["predict_s"], r["command_s"], r["torch_threads"]]
                 for label, r in results.items()]))
    two = results[RUNS[2][0]]
    ratios = {label: results[label]["predict_s"] / two["predict_s"] for label, _, _ in RUNS[:2]}
    for label, ratio in ratios.items():
        whole = results[label]["command_s"] / two["command_s"]
        print(f"2 processes vs {label}: {ratio:.2f}x (prediction), {whole:.2f}x (whole command)")
    print(f"identical predictions in all runs: {'yes' if same else 'NO'}")
    save_json(args.json, {"benchmark": "scaling", "machine": machine(), "settings": vars(args), "samples": total,
                          "runs": {k: {n: v for n, v in r.items() if n != "answers"} for k, r in results.items()},
                          "speedup_prediction": ratios, "identical_predictions": same})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
