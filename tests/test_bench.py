"""`sepit bench` end to end on a small task file: resume, exact gathering over processes, results schema."""

import json
import subprocess
import sys

import pytest

from sepit.commands.bench import bench
from sepit.evaluation.scoring import ScoringSettings
from sepit.registry import MODELS
from fake_models import CoinModel



@pytest.fixture(autouse=True)
def coin_model():
    """The fake model, registered for each test only: other test files see the registry as it ships."""
    with MODELS.registered("coin", CoinModel, source="tests/test_bench.py"):
        yield


SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWUAASSNGQ",
             "MSDNGPQNQRNAPRITFGGPSDSTGSNQNGERSGARSKQRRPQGLPNNTASWFTALTQHGKEDLKFPRGQGVPINTNSSPDDQIGYYRRATRRIRGGDGKMKDLSPRWYFYYLGTGPEAGLPYGANKDGIIWVATEGALNTPKDHIGTRNPANNAAIVLQLPQGTTLPKGFYAE",
             "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHFDLSHGSAQVKGHGKKVADALTNAVAHVDDMPNALSALSDLHAHKLRVDPVNFKLLSHCLLVTLAAHLPAEFTPAVHASLDKFLASVSTVLTSKYR",
             "MGLSDGEWQLVLNVWGKVEADIPGHGQEVLIRLFKGHPETLEKFDKFKHLKSEDEMKASEDLKKHGATVLTALGGILKKKGHHEAEIKPLAQSHATKHKIPVKYLEFISECIIQVLQSKHPGDFGADAQGAMNKALELFRKDMASNYKELGFQG"]


def make_task_file(path, n=12):
    rows = []
    for split, count in (("train", 8), ("test", n)):
        for i in range(count):
            seq = SEQUENCES[i % 4][: 60 + 7 * i]
            protein = {"id": f"{split}{i}", "sequence": seq}
            rows.append({"id": f"{split[:2]}o{i}", "task": "tiny_open", "split": split, "protein": protein,
                         "instruction": "Describe <protein>.",
                         "reference": f"A protein of family {i % 4} that binds metal ions."})
            rows.append({"id": f"{split[:2]}c{i}", "task": "tiny_closed", "split": split, "protein": protein,
                         "instruction": "Is <protein> an enzyme?", "reference": "yes" if i % 4 < 2 else "no",
                         "choices": ["yes", "no"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def predictions(folder):
    rows = [json.loads(line) for f in sorted((folder / "predictions").glob("*.jsonl"))
            for line in f.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # timings differ run to run


def stable(results):
    return {k: v for k, v in results.items() if k not in ("timestamps", "config")}


@pytest.fixture
def task_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    return make_task_file(tmp_path / "tiny.jsonl")


def test_bench_writes_one_row_per_sample_and_a_results_file(task_file, tmp_path, capsys):
    bench("coin", [str(task_file)], tmp_path / "run", batch_size=5, scoring=ScoringSettings(n_resamples=200))
    rows = predictions(tmp_path / "run")
    assert sorted((r["task"], r["id"]) for r in rows) == sorted(
        [("tiny_open", f"teo{i}") for i in range(12)] + [("tiny_closed", f"tec{i}") for i in range(12)])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["schema_version"] == 1 and results["scale"] == "0-100"
    assert results["model"] == {"name": "coin", "fingerprint": "coin-v1", "modality": "text-only",
                                "params_total": 0, "params_active": 0}
    closed = results["tasks"]["tiny_closed"]
    right = sum(r["prediction"] == r["reference"] for r in rows if r["task"] == "tiny_closed")
    assert closed["n"] == 12 and closed["metrics"]["accuracy"] == pytest.approx(100 * right / 12)
    assert closed["metrics"]["extraction_failure_rate"] == pytest.approx(100 * (12 - right) / 12)
    lo, hi = closed["ci"]["accuracy"]
    assert lo <= closed["metrics"]["accuracy"] <= hi
    assert closed["complete"] and closed["dataset_hash"]
    assert sum(b["n"] for b in closed["leakage"]["bins"].values()) == 12
    assert set(results["tasks"]["tiny_open"]["metrics"]) >= {"bleu1", "bleu4", "rouge1", "rougeL", "meteor"}
    assert results["env"]["packages"]["nltk"] and "git_commit" in results["env"]
    log = [json.loads(line) for line in (tmp_path / "run" / "samples" / "tiny_closed.jsonl").read_text().splitlines()]
    assert {"prompt_hash", "protein_hash", "reference_hash", "answer", "correct", "train_identity"} <= set(log[0])
    assert "tiny_closed (n=12)" in capsys.readouterr().out


def test_the_batch_size_reaches_the_model_as_a_decoding_setting(task_file, tmp_path, monkeypatch):
    """`--batch_size` arrives in the settings of every `answer` call, and a call holds at most
    batch_size x batches_per_call samples; the recorded generation settings leave it to its own entry."""
    calls = []
    monkeypatch.setattr(CoinModel, "batches_per_call", 2, raising=False)
    original = CoinModel.answer
    monkeypatch.setattr(CoinModel, "answer", lambda self, s, c: calls.append((len(s), c.batch_size)) or original(self, s, c))
    bench("coin", [str(task_file)], tmp_path / "run", batch_size=3, scoring=ScoringSettings(n_resamples=200))
    assert {size for _, size in calls} == {3} and max(n for n, _ in calls) == 6 and sum(n for n, _ in calls) == 24
    config = json.loads((tmp_path / "run" / "results.json").read_text())["config"]
    assert config["batch_size"] == 3 and "batch_size" not in config["generation"]


def test_a_crashed_run_resumes_to_the_same_results(task_file, tmp_path):
    bench("coin", [str(task_file)], tmp_path / "whole", batch_size=5, scoring=ScoringSettings(n_resamples=200))

    class Crash(RuntimeError):
        pass

    calls = []

    def crashing(self, samples, config, original=CoinModel.generate):
        calls.append(len(samples))
        if len(calls) == 3:
            raise Crash
        return original(self, samples, config)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CoinModel, "generate", crashing)
        with pytest.raises(Crash):
            bench("coin", [str(task_file)], tmp_path / "resumed", batch_size=5,
                  scoring=ScoringSettings(n_resamples=200))
    assert len(predictions(tmp_path / "resumed")) == 0  # still journalled, not final
    journalled = sum(len(f.read_text().splitlines()) for f in (tmp_path / "resumed" / "journal").glob("*"))
    assert journalled == 10

    seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CoinModel, "generate", lambda self, s, c, o=CoinModel.generate: seen.extend(s) or o(self, s, c))
        bench("coin", [str(task_file)], tmp_path / "resumed", batch_size=5, scoring=ScoringSettings(n_resamples=200))
    assert len(seen) == 24 - 10  # only what was missing
    assert predictions(tmp_path / "resumed") == predictions(tmp_path / "whole")
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert stable(resumed) == stable(whole)


def test_two_processes_predict_exactly_what_one_does(task_file, tmp_path):
    bench("coin", [str(task_file)], tmp_path / "one", batch_size=3, scoring=ScoringSettings(n_resamples=200))
    bench("coin", [str(task_file)], tmp_path / "two", batch_size=3, devices=2, strategy="ddp_fork",
          scoring=ScoringSettings(n_resamples=200))
    assert predictions(tmp_path / "two") == predictions(tmp_path / "one")
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert stable(two) == stable(one)


KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from fake_models import CoinModel
from sepit.cli import main
from sepit.registry import MODELS
MODELS.register("coin", lambda: CoinModel(kill_after_batches=2))
main(["bench", "--model", "coin", "--tasks", {tasks!r}, "--output", {output!r}, "--batch_size", "5"])
"""


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_same_results(task_file, tmp_path):
    import os
    from pathlib import Path

    bench("coin", [str(task_file)], tmp_path / "whole", batch_size=5)
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), tasks=str(task_file), output=str(tmp_path / "run"))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "SEPIT_CACHE": str(tmp_path / "cache")})
    assert killed.returncode == -9, killed.stderr
    assert sum(len(f.read_text().splitlines()) for f in (tmp_path / "run" / "journal").glob("*")) == 10
    bench("coin", [str(task_file)], tmp_path / "run", batch_size=5)
    assert predictions(tmp_path / "run") == predictions(tmp_path / "whole")
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    resumed = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stable(resumed) == stable(whole)


def test_closed_tasks_can_be_scored_by_loglikelihood(task_file, tmp_path):
    bench("coin", [str(task_file)], tmp_path / "ll",
          scoring=ScoringSettings(closed_methods={"*": "loglikelihood"}, n_resamples=100))
    rows = [r for r in predictions(tmp_path / "ll") if r["task"] == "tiny_closed"]
    assert all(len(r["loglikelihoods"]) == 2 for r in rows)
    results = json.loads((tmp_path / "ll" / "results.json").read_text())["tasks"]["tiny_closed"]
    assert results["closed_method"] == "loglikelihood"
    right = sum(r["coin"] for r in rows)  # the coin model likes the right option exactly when its coin is up
    assert results["metrics"]["accuracy"] == pytest.approx(100 * right / 12)
    assert results["metrics"]["extraction_failure_rate"] == 0


def test_loglikelihood_scoring_needs_a_model_that_supports_it(task_file, tmp_path):
    from sepit.data.errors import DataError

    with pytest.raises(DataError, match="cannot score choices by log-likelihood"):
        bench("majority", [str(task_file)], tmp_path / "x",
              scoring=ScoringSettings(closed_methods={"tiny_closed": "loglikelihood"}))
    with pytest.raises(DataError, match="unknown method 'likelihood'"):
        bench("coin", [str(task_file)], tmp_path / "x", scoring=ScoringSettings(closed_methods={"*": "likelihood"}))


def test_per_token_logprobs_need_a_model_that_reports_them(task_file, tmp_path):
    from sepit.data.errors import DataError
    from sepit.interface import GenerationSettings

    with pytest.raises(DataError, match="cannot report per-token log-probabilities"):
        bench("coin", [str(task_file)], tmp_path / "x", generation=GenerationSettings(logprobs=True))
    assert GenerationSettings(logprobs=True).hash() == GenerationSettings().hash()  # same answers, same key


def test_shared_ids_across_tasks_keep_their_own_loglikelihoods(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    rows = []
    for task, choices in (("a_yn", ["yes", "no"]), ("b_mc", ["red", "green", "blue"])):
        for split in ("train", "test"):
            rows += [{"id": f"{split}{i}", "task": task, "split": split, "choices": choices, "reference": choices[0],
                      "protein": {"id": f"{split}{i}", "sequence": SEQUENCES[i % 4][:50]},
                      "instruction": "Which is <protein>?"} for i in range(3)]
    path = tmp_path / "shared.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench("coin", [str(path)], tmp_path / "run",
          scoring=ScoringSettings(closed_methods={"*": "loglikelihood"}, n_resamples=10))
    lengths = {(r["task"], len(r["loglikelihoods"])) for r in predictions(tmp_path / "run")}
    assert lengths == {("a_yn", 2), ("b_mc", 3)}


def test_resuming_refuses_rows_of_a_changed_task_and_allows_fewer_tasks(task_file, tmp_path):
    from sepit.data.errors import DataError

    bench("coin", [str(task_file)], tmp_path / "run",
          scoring=ScoringSettings(closed_methods={"*": "loglikelihood"}, n_resamples=10))
    bench("coin", [str(task_file)], tmp_path / "run",
          scoring=ScoringSettings(n_resamples=10))  # fewer log-likelihood tasks: fine
    changed = task_file.read_text().replace("binds metal ions", "binds zinc")
    task_file.write_text(changed)
    with pytest.raises(DataError, match="sample 'teo0'.*cannot be reused: its reference .*--fresh"):
        bench("coin", [str(task_file)], tmp_path / "run", scoring=ScoringSettings(n_resamples=10))
    bench("coin", [str(task_file)], tmp_path / "run", scoring=ScoringSettings(n_resamples=10), fresh=True)
    assert all("zinc" in r["reference"] for r in predictions(tmp_path / "run") if r["task"] == "tiny_open")


def test_more_devices_than_batches_still_predicts_every_sample(task_file, tmp_path):
    bench("coin", [str(task_file)], tmp_path / "run", batch_size=100, devices=2, strategy="ddp_fork",
          limit=3, scoring=ScoringSettings(n_resamples=10))
    assert len(predictions(tmp_path / "run")) == 6


def test_secrets_in_model_arguments_never_reach_the_results():
    from sepit.commands.bench import redact

    args = {"api_key": "sk-1", "client": {"headers": {"Authorization": "Bearer x"}, "hf_token": "t"},
            "max_new_tokens": 5, "endpoints": [{"secret": "s", "url": "http://127.0.0.1"}]}
    assert redact(args) == {"api_key": "***", "client": {"headers": {"Authorization": "***"}, "hf_token": "***"},
                            "max_new_tokens": 5, "endpoints": [{"secret": "***", "url": "http://127.0.0.1"}]}


def test_bench_builds_the_samples_once_and_checks_each_saved_row_once(task_file, tmp_path, monkeypatch):
    """Predicting and scoring share one build of the split; rows are checked against it when reused, and
    scoring does not check them again."""
    import sepit.commands.bench as bench_module
    import sepit.evaluation.scoring as scoring_module
    from sepit.tasks import Task

    builds, checks = [], []
    splits, mismatch = Task.splits, bench_module.mismatch
    monkeypatch.setattr(Task, "splits", lambda task: builds.append(task.name) or splits(task))
    for module in (bench_module, scoring_module):
        monkeypatch.setattr(module, "mismatch", lambda row, sample: checks.append(row["id"]) or mismatch(row, sample))
    settings = ScoringSettings(leakage=False, n_resamples=10)
    bench("coin", [str(task_file)], tmp_path / "run", batch_size=5, scoring=settings)
    assert sorted(builds) == ["tiny_closed", "tiny_open"] and checks == []  # every row made from the samples
    builds.clear()
    bench("coin", [str(task_file)], tmp_path / "run", batch_size=5, scoring=settings)  # all 24 rows reused
    assert sorted(builds) == ["tiny_closed", "tiny_open"] and sorted(checks) == sorted(set(checks))
    assert len(checks) == 24
    # The dataset hash is over the task's own order, as `sepit score` and submissions compute it (the file's
    # order here: te0, te1, ..., te10, te11, not sorted by id).
    from sepit.tasks import resolve_tasks, sample_hash

    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for task in resolve_tasks([str(task_file)]):
        expected = splits(task)["test"]
        assert [s.id for s in expected] != sorted(s.id for s in expected)
        assert results["tasks"][task.name]["dataset_hash"] == sample_hash(expected)


def test_bad_annotations_or_required_entities_stop_before_predicting(tmp_path, monkeypatch):
    """A JSONL task's metadata.entities are checked, and --scoring.entities require applied, before any row is
    predicted; annotated references are scored on their annotations."""
    from sepit.data.errors import DataError

    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    path = make_task_file(tmp_path / "tiny.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        if row["task"] == "tiny_open" and row["id"] == "teo3":
            row["metadata"] = {"entities": {"go": ["GO:9999999"]}}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"bad.jsonl, line \d+ \(record 'teo3'\): 'GO:9999999' is not a GO id"):
        bench("coin", [str(bad)], tmp_path / "bad_run")
    assert not (tmp_path / "bad_run" / "predictions").exists()
    with pytest.raises(DataError, match=r"task 'tiny_open': .*none of its 12 references names"):
        bench("coin", [str(path)], tmp_path / "plain_run", scoring=ScoringSettings(entities="require"))
    assert not (tmp_path / "plain_run" / "predictions").exists()
    for row in rows:
        if row["task"] == "tiny_open":
            row["metadata"] = {"entities": {"go": ["GO:0046872"]}}  # metal ion binding, which the text names
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench("coin", [str(good)], tmp_path / "good_run", scoring=ScoringSettings(entities="require", n_resamples=50))
    results = json.loads((tmp_path / "good_run" / "results.json").read_text())["tasks"]["tiny_open"]
    assert results["grounding"] == {"kinds": ["go_mf"], "samples_without_entities": 0,
                                    "share_without_entities": 0.0, "n": {"entity_precision": 12,
                                                                         "entity_recall": 12, "entity_f1": 12,
                                                                         "go_hf1": 12}}
