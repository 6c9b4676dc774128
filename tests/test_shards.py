"""Scheduler arrays (`sepit bench --shard K/N`): disjoint shares written concurrently into one folder, a killed
shard re-run, scoring once when every row exists, and the folder's finishing lock."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sepit.commands.bench import bench
from sepit.data.errors import DataError
from sepit.evaluation.predictions import PredictionStore
from sepit.evaluation.scoring import ScoringSettings
from sepit.evaluation.shards import Shard, finish_lock, shard_of
from sepit.interface import GenerationSettings
from sepit.registry import MODELS
from fake_models import CoinModel
from test_bench import make_task_file, predictions, stable

SCORING = ScoringSettings(n_resamples=50)
SHARD_RUN = """
import sys
sys.path.insert(0, {tests!r})
from fake_models import CoinModel
from sepit.cli import main
from sepit.registry import MODELS
MODELS.register("coin", lambda: CoinModel(kill_after_batches={kill}))
main(["bench", "--model", "coin", "--tasks", {tasks!r}, "--output", {output!r}, "--batch_size", "2",
      "--shard", {shard!r}, "--scoring.n_resamples", "50"])
"""


@pytest.fixture(autouse=True)
def coin_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    with MODELS.registered("coin", CoinModel, source="tests/test_shards.py"):
        yield


def shard_process(task_file, output, shard, kill=None):
    script = SHARD_RUN.format(tests=str(Path(__file__).parent), tasks=str(task_file), output=str(output),
                              shard=shard, kill=kill)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ})


def test_shares_are_fixed_disjoint_and_even():
    owners = [shard_of("task", f"s{i}", 3) for i in range(3000)]
    assert set(owners) == {1, 2, 3} and all(900 < owners.count(k) < 1100 for k in (1, 2, 3))
    assert owners == [shard_of("task", f"s{i}", 3) for i in range(3000)]
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("0/3", "4/3", "2", "a/b"):
        with pytest.raises(DataError, match="is not K/N"):
            Shard.parse(bad)


@pytest.mark.slow
def test_three_shards_one_killed_and_rerun_equal_a_single_run(tmp_path, capsys):
    task_file = make_task_file(tmp_path / "tiny.jsonl")
    bench("coin", [str(task_file)], tmp_path / "whole", batch_size=2, scoring=SCORING)
    run = tmp_path / "array"
    bench("coin", [str(task_file)], run, batch_size=2, scoring=SCORING, shard="1/3")
    assert "still have no prediction, owed by shard(s) 2, 3 of 3" in capsys.readouterr().out
    killed = shard_process(task_file, run, "2/3", kill=1)
    assert killed.wait() == -9  # SIGKILL after its first batch: one batch journalled
    bench("coin", [str(task_file)], run, batch_size=2, scoring=SCORING, shard="3/3")
    assert "owed by shard(s) 2 of 3" in capsys.readouterr().out and not (run / "results.json").exists()
    with pytest.raises(DataError, match="other generation settings"):
        bench("coin", [str(task_file)], run, batch_size=2, shard="2/3", generation=GenerationSettings(max_new_tokens=9))
    bench("coin", [str(task_file)], run, batch_size=2, scoring=SCORING, shard="2/3")  # the re-run finishes and scores
    assert predictions(run) == predictions(tmp_path / "whole")  # row for row, no duplicates
    whole, array = (json.loads((folder / "results.json").read_text()) for folder in (tmp_path / "whole", run))
    assert stable(array) == stable(whole) and array["config"]["shards"] == 3
    assert not list((run / "journal").glob("*.jsonl"))


@pytest.mark.slow
def test_concurrent_shards_write_one_folder_and_the_last_scores(tmp_path):
    task_file = make_task_file(tmp_path / "tiny.jsonl")
    bench("coin", [str(task_file)], tmp_path / "whole", batch_size=2, scoring=SCORING)
    jobs = [shard_process(task_file, tmp_path / "array", f"{k}/3") for k in (1, 2, 3)]
    outputs = [job.communicate() for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], outputs
    assert sum("wrote " in out for out, _ in outputs) >= 1  # whoever saw every row merged and scored
    assert predictions(tmp_path / "array") == predictions(tmp_path / "whole")


def test_a_second_job_finds_the_finishing_lock_held(tmp_path):
    with finish_lock(tmp_path) as holder:
        assert holder is None
        with finish_lock(tmp_path) as other:
            assert other is not None and f"pid {os.getpid()}" in other
    with finish_lock(tmp_path) as holder:
        assert holder is None  # released when the holder ends (or dies)


def test_reading_journals_never_rewrites_a_file_another_job_is_writing(tmp_path):
    store = PredictionStore(tmp_path, "fp", "gen")
    store.journals.mkdir(parents=True)
    row = {"task": "t", "id": "a", "prediction": "x", "reference": "y", "kind": "open", "choices": None,
           "fingerprint": "fp", "generation_hash": "gen"}
    journal = store.journals / "other-node-rank0-1-1.jsonl"
    journal.write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "b"})[:30])  # a line being written
    before = journal.read_bytes()
    assert list(store.done()) == [("t", "a")]
    assert journal.read_bytes() == before


def _row(sample_id):
    return {"task": "t", "id": sample_id, "prediction": "x", "reference": "y", "kind": "open", "choices": None,
            "fingerprint": "fp", "generation_hash": "gen"}


def test_a_merge_leaves_a_journal_whose_writer_is_alive(tmp_path):
    from sepit.evaluation.predictions import Journal

    store = PredictionStore(tmp_path, "fp", "gen")
    live = Journal(store.journals / "node1-shard1of2-rank0-1-1.jsonl")
    live.append([_row("a")])  # an open journal: its writer holds the lock
    dead = store.journals / "node2-shard2of2-rank0-2-2.jsonl"
    dead.write_text(json.dumps(_row("b")) + "\n")
    store.finish(store.done().values())
    assert live.path.exists() and not dead.exists()
    assert json.loads((tmp_path / "predictions/t.jsonl").read_text().splitlines()[1])["id"] == "b"
    live.append([_row("c")])  # the live job goes on; the next merge takes its rows
    live.close()
    rows = store.done()
    assert sorted(key[1] for key in rows) == ["a", "b", "c"]
    store.finish(rows.values())
    assert not live.path.exists()


def test_a_journal_removed_by_another_merge_while_reading_is_skipped(tmp_path, monkeypatch):
    store = PredictionStore(tmp_path, "fp", "gen")
    store.journals.mkdir(parents=True)
    (store.journals / "gone.jsonl").write_text(json.dumps(_row("a")) + "\n")
    other = PredictionStore(tmp_path, "fp", "gen")
    other.finish(other.done().values())  # the other job merges and removes it ...
    (store.journals / "gone.jsonl").write_text("")  # ... (listed here before it went)
    original = Path.read_bytes

    def vanishing(path):
        if path.name == "gone.jsonl":
            raise FileNotFoundError(path)
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", vanishing)
    assert list(store.done()) == [("t", "a")]  # its row is in the final file, read after the journals
