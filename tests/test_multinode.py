"""`sepit bench --num_nodes 2`: two "nodes" of one process each on 127.0.0.1 (gloo), the node rank, master
address and world size set in the environment as a launcher (SLURM, torchrun) would. Their predictions equal a
one-process run, row for row."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sepit.commands.bench import bench
from sepit.evaluation.scoring import ScoringSettings
from sepit.registry import MODELS
from fake_models import CoinModel
from test_bench import make_task_file, predictions, stable

NODE = """
import sys
sys.path.insert(0, {tests!r})
from fake_models import CoinModel
from sepit.cli import main
from sepit.registry import MODELS
MODELS.register("coin", CoinModel)
main(["bench", "--model", "coin", "--tasks", {tasks!r}, "--output", {output!r}, "--batch_size", "2",
      "--num_nodes", "2", "--accelerator", "cpu", "--scoring.n_resamples", "50"])
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_predict_what_one_process_predicts(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    task_file = make_task_file(tmp_path / "tiny.jsonl")
    with MODELS.registered("coin", CoinModel, source="tests/test_multinode.py"):
        bench("coin", [str(task_file)], tmp_path / "one", batch_size=2, scoring=ScoringSettings(n_resamples=50))
    script = NODE.format(tests=str(Path(__file__).parent), tasks=str(task_file), output=str(tmp_path / "two"))
    launcher = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                "PL_TORCH_DISTRIBUTED_BACKEND": "gloo"}
    nodes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **launcher, "NODE_RANK": str(rank)}) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert predictions(tmp_path / "two") == predictions(tmp_path / "one")
    assert not list((tmp_path / "two" / "journal").glob("*.jsonl"))  # merged
    shares = [int(out.split(f"rank {rank} of 2: ")[1].split()[0]) for rank, (out, _) in enumerate(outputs)]
    assert shares[0] > 0 and shares[1] > 0 and sum(shares) == 24  # both nodes predicted, nothing twice
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    assert stable(two) == stable(one) and two["config"]["num_nodes"] == 2
    assert "wrote " in outputs[0][0] and "wrote " not in outputs[1][0]  # global rank 0 scores
