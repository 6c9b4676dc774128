"""bench/gpu.py is the script a session runs once when a GPU is lent (BENCHMARKS.md): it must work before
then. Here on tiny shapes on the CPU, in float32, where our greedy answers equal Hugging Face's batched ones."""

import json

from bench import gpu


def test_the_gpu_script_runs_on_tiny_shapes(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--tiny", "--device", "cpu", "--dtype", "float32", "--samples", "6", "--batch-sizes", "2", "6",
                     "--new-tokens", "5", "--train-steps", "2", "--train-batch", "2", "--prompt-tokens", "30",
                     "--residues", "20", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    rows = results["generation"]
    assert [(r["batch"], r["path"]) for r in rows] == [(2, "ours"), (2, "hf_batched"), (6, "ours"), (6, "hf_batched")]
    assert all(r["equal_rows"] == "6/6" and r["new_tokens"] > 0 and r["new_tokens_per_s"] > 0 for r in rows)
    training = results["training"]
    assert training["steps"] == 2 and training["tokens_per_s"] > 0 and 0 < training["mfu"] < 1
    assert "stage-1 training" in capsys.readouterr().out
