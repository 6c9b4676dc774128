"""A benchmark released with a test split only, brought in by a YAML mapping: it predicts and scores without an
error after predicting, the leakage report runs against the training set the user names (or is skipped with a
note), baselines that need a train split refuse before predicting, and the floors that need none run."""

import json

import pytest
import yaml

from sepit.commands.bench import bench
from sepit.data.errors import DataError
from sepit.evaluation.scoring import ScoringSettings
from sepit.interface import ModelCard, ProteinLLM
from sepit.registry import MODELS
from sepit_baselines.options import WITHHELD
from sepit_leaderboard.board import build_board
from sepit_leaderboard.results import load_run
from sepit_leaderboard.tables import markdown

LETTERS = "ABCD"
SEQUENCE = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDE"


class LetterModel(ProteinLLM):
    """Answers with the reference's letter on even questions and "A" on odd ones."""

    def generate(self, samples, config):
        return [f"The answer is ({LETTERS[s.choices.index(s.reference)] if int(s.id[1:]) % 2 == 0 else 'A'})."
                for s in samples]

    def describe(self):
        return ModelCard("letters", "seq", 0, 0, "letters-v1")


class LengthReader(ProteinLLM):
    """Prefers the option whose position is the protein's length modulo the number of options: it reads the
    protein, so withholding it changes its choice."""

    def generate(self, samples, config):
        return [s.choices[len(s.protein) % len(s.choices)] if s.choices else "A protein." for s in samples]

    def loglikelihood(self, samples):
        return [[0.0 if i == len(s.protein) % len(s.choices) else -float(i + 1) for i in range(len(s.choices))]
                for s in samples]

    def describe(self):
        return ModelCard("reader", "seq", 10, 10, "reader-v1")


@pytest.fixture(autouse=True)
def fake_models(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    with MODELS.registered("letters", LetterModel, source="tests"), \
            MODELS.registered("reader", LengthReader, source="tests"):
        yield


@pytest.fixture
def benchmark(tmp_path):
    """12 questions on post-2025 proteins, options A-D that differ per question (some with three), test only."""
    lines = ["qid,acc,seq,question,a,b,c,d,answer"]
    for i in range(12):
        options = [f"option {i}-{k}" for k in range(3 if i % 3 == 0 else 4)] + ([""] if i % 3 == 0 else [])
        lines.append(f"q{i},N{i},{SEQUENCE[:40 + 5 * i]},Which function has it?,{','.join(options)},"
                     f"{LETTERS[i % (3 if i % 3 == 0 else 4)]}")
    (tmp_path / "post2025.csv").write_text("\n".join(lines) + "\n")
    path = tmp_path / "post2025.yaml"
    path.write_text(yaml.safe_dump({
        "task": "post2025", "version": "1", "data": "post2025.csv", "id": "qid",
        "protein": {"sequence": "seq", "id": "acc"},
        "instruction": {"template": "{question}\n<protein>\n{options}"},
        "reference": {"field": "answer", "letter": True}, "choices": ["a", "b", "c", "d"]}))
    return path


def results(folder):
    return json.loads((folder / "results.json").read_text())["tasks"]["post2025"]


def test_a_test_only_task_scores_with_letters_and_skips_the_leakage_report_with_a_note(benchmark, tmp_path):
    bench("letters", [str(benchmark)], tmp_path / "run", scoring=ScoringSettings(n_resamples=50))
    result = results(tmp_path / "run")
    assert result["metrics"]["accuracy"] == pytest.approx(100 * 6 / 12 + 100 * 2 / 12)  # odd ids: 0, 3, ... answer A
    assert result["metrics"]["extraction_failure_rate"] == 0.0
    assert "leakage" not in result and "no train split" in result["not_reported"]["leakage"]
    assert "different option sets" in result["not_reported"]["macro_f1"] and "macro_f1" not in result["metrics"]
    board = build_board([load_run(tmp_path / "run" / "results.json")], n_resamples=50)
    assert any("post2025: no identity-to-train slice for letters: the task has no train split" in n
               for n in board["notes"])


def test_the_training_set_the_user_names_gives_the_leakage_report(benchmark, tmp_path):
    fasta = tmp_path / "trained_on.fasta"
    fasta.write_text(f">sp|TR1|TR1_HUMAN a protein\n{SEQUENCE[:45]}\n>TR2\n{SEQUENCE[60:]}\n")
    bench("letters", [str(benchmark)], tmp_path / "run", scoring=ScoringSettings(n_resamples=50, train=str(fasta)))
    leakage = results(tmp_path / "run")["leakage"]
    assert leakage["train"] == {"source": str(fasta), "proteins": 2}
    logs = {row["id"]: row for row in map(json.loads, (tmp_path / "run/samples/post2025.jsonl").read_text().splitlines())}
    assert logs["q1"]["train_identity"] == 100.0  # q1's protein is TR1's sequence exactly
    assert sum(b["n"] for b in leakage["bins"].values()) == 12


def test_a_missing_training_set_or_a_baseline_needing_train_stops_before_predicting(benchmark, tmp_path):
    with pytest.raises(DataError, match=r"--scoring.train: FASTA file '.*none.fasta' not found"):
        bench("letters", [str(benchmark)], tmp_path / "a", scoring=ScoringSettings(train=str(tmp_path / "none.fasta")))
    with pytest.raises(DataError, match=r"task 'post2025': the majority baseline needs a train split, and this task "
                                        r"has none .*first_option, random_option or option_prior"):
        bench("majority", [str(benchmark)], tmp_path / "b")
    assert not (tmp_path / "a" / "predictions").exists() and not (tmp_path / "b" / "predictions").exists()


def test_first_and_random_option_floors(benchmark, tmp_path):
    bench("first_option", [str(benchmark)], tmp_path / "first", scoring=ScoringSettings(n_resamples=50))
    # The answer is A for i % 3 == 0 (0, 3, 6, 9) and for i % 4 == 0 among the rest (4, 8).
    assert results(tmp_path / "first")["metrics"]["accuracy"] == pytest.approx(100 * 6 / 12)
    answers = {}
    for batch in (1, 5):
        folder = tmp_path / f"random{batch}"
        bench("random_option", [str(benchmark)], folder, batch_size=batch, scoring=ScoringSettings(n_resamples=50))
        answers[batch] = [json.loads(line)["prediction"] for line in (folder / "predictions/post2025.jsonl").open()]
    assert answers[1] == answers[5] and len(set(answers[1])) == 12
    other = tmp_path / "random-seed1"
    bench("random_option", [str(benchmark)], other, model_args={"seed": 1}, scoring=ScoringSettings(n_resamples=50))
    assert [json.loads(line)["prediction"] for line in (other / "predictions/post2025.jsonl").open()] != answers[1]


def test_the_option_prior_withholds_the_protein_and_the_board_shows_the_gap(benchmark, tmp_path):
    scoring = ScoringSettings(n_resamples=50, closed_methods={"*": "loglikelihood"})
    bench("reader", [str(benchmark)], tmp_path / "reader", scoring=scoring)
    bench("option_prior", [str(benchmark)], tmp_path / "prior", model_args={"model": "reader"}, scoring=scoring)
    rows = [json.loads(line) for line in (tmp_path / "prior/predictions/post2025.jsonl").open()]
    # The reader's choice with the protein withheld: position len("X") % options, for every question.
    assert all(r["prediction"] == r["choices"][len(WITHHELD) % len(r["choices"])] for r in rows)
    assert all(r["loglikelihoods"][1] == 0.0 for r in rows)
    prior = json.loads((tmp_path / "prior/results.json").read_text())["model"]
    assert (prior["name"], prior["control_of"], prior["modality"]) == ("reader-option-prior", "reader", "text-only")
    open_task = tmp_path / "describe.jsonl"  # an open task beside it, which the prior does not answer
    open_task.write_text(json.dumps({"id": "d1", "protein": {"id": "P1", "sequence": "MKV"},
                                     "instruction": "Describe <protein>.", "reference": "A protein."}) + "\n")
    bench("reader", [str(open_task)], tmp_path / "reader-open", scoring=ScoringSettings(n_resamples=50))
    runs = [load_run(tmp_path / name / "results.json") for name in ("reader", "reader-open", "prior")]
    board = build_board(runs, n_resamples=50, control="random-option")
    reader = next(r for r in board["rows"] if r["model"] == "reader")
    reader_accuracy = reader["tasks"]["post2025"]["value"]
    prior_accuracy = next(r for r in board["rows"] if r["model"] == "reader-option-prior")["tasks"]["post2025"]["value"]
    assert reader["prior"] == "reader-option-prior" and reader["vs_prior"]["describe"] is None
    assert reader["vs_prior"]["post2025"]["diff"] == pytest.approx(reader_accuracy - prior_accuracy)
    assert reader["vs_prior"]["average"]["diff"] == pytest.approx(reader_accuracy - prior_accuracy)
    table = markdown(board)
    assert "## Gap to each model's option prior" in table and "| reader vs reader-option-prior |" in table


def test_floors_refuse_open_tasks_and_models_without_likelihoods(tmp_path):
    rows = [{"id": "o1", "task": "open_only", "protein": {"id": "P1", "sequence": "MKV"},
             "instruction": "Describe <protein>.", "reference": "A kinase."}]
    (tmp_path / "open.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(DataError, match=r"model 'first_option': answers closed-set questions only, and open_only is "
                                        r"open-ended"):
        bench("first_option", [str(tmp_path / "open.jsonl")], tmp_path / "run")
    with pytest.raises(DataError, match=r"model 'letters': cannot score choices by log-likelihood, which the option "
                                        r"prior needs"):
        bench("option_prior", [str(tmp_path / "open.jsonl")], tmp_path / "run", model_args={"model": "letters"})


class EchoModel(ProteinLLM):
    def generate(self, samples, config):
        return [f"A protein of {len(s.protein)} residues." for s in samples]

    def describe(self):
        return ModelCard("echo", "seq", 0, 0, "echo-v1")


def test_a_file_without_answers_is_predicted_and_not_scored(tmp_path, capsys):
    from test_mapping import PEERS

    path = tmp_path / "evolla_questions.yaml"
    path.write_text(yaml.safe_dump({"format": "evolla_inputs", "data": str(PEERS / "evolla/inputs.tsv")}))
    with MODELS.registered("echo", EchoModel, source="tests"):
        bench("echo", [str(path)], tmp_path / "run", scoring=ScoringSettings(entities="require"))
    rows = [json.loads(line) for line in (tmp_path / "run/predictions/evolla_questions.jsonl").open()]
    assert [r["prediction"] for r in rows] == ["A protein of 183 residues.", "A protein of 81 residues.",
                                               "A protein of 80 residues."]
    result = json.loads((tmp_path / "run/results.json").read_text())["tasks"]["evolla_questions"]
    assert result["metrics"] == {} and "no reference answers" in result["not_scored"] and result["n"] == 3
    assert "evolla_questions (n=3): not scored" in capsys.readouterr().out
    board = build_board([load_run(tmp_path / "run" / "results.json")], n_resamples=50)
    assert board["tasks"] == [] and "evolla_questions: predicted without reference answers, so not on the board" \
        in board["notes"]


def test_sepit_score_checks_rows_against_a_mapping_and_reports_leakage(benchmark, tmp_path):
    from sepit.commands.score import score

    bench("letters", [str(benchmark)], tmp_path / "run", scoring=ScoringSettings(n_resamples=50, leakage=False))
    fasta = tmp_path / "train.fa"
    fasta.write_text(f">TR1\n{SEQUENCE[:45]}\n")
    score(tmp_path / "run/predictions", tmp_path / "rescored/results.json", tasks=[str(benchmark)],
          scoring=ScoringSettings(n_resamples=50, train=str(fasta)))
    before, after = results(tmp_path / "run"), results(tmp_path / "rescored")
    assert after["metrics"] == before["metrics"] and after["dataset_hash"] == before["dataset_hash"] is not None
    assert after["leakage"]["train"] == {"source": str(fasta), "proteins": 1}
    rows = (tmp_path / "run/predictions/post2025.jsonl").read_text().splitlines()
    edited = json.loads(rows[0])
    edited["reference"] = edited["choices"][-1] if edited["reference"] != edited["choices"][-1] else edited["choices"][0]
    (tmp_path / "run/predictions/post2025.jsonl").write_text("\n".join([json.dumps(edited), *rows[1:]]) + "\n")
    with pytest.raises(DataError, match=r"task 'post2025' \(version 1/sha256:\w+\), sample 'q0': the prediction row "
                                        r"does not match the task: its reference"):
        score(tmp_path / "run/predictions", tmp_path / "again/results.json", tasks=[str(benchmark)])


def test_the_option_prior_withholds_what_the_metadata_says_about_the_protein():
    from sepit.data.protein import make_protein
    from sepit.data.sample import make_sample
    from sepit_baselines.options import OptionPriorModel

    seen = []

    class Recorder(LengthReader):
        def loglikelihood(self, samples):
            seen.extend((s.protein.sequence, dict(s.metadata)) for s in samples)
            return super().loglikelihood(samples)

    with MODELS.registered("recorder", Recorder, source="tests"):
        prior = OptionPriorModel("recorder")
    question = make_sample("q", "t", make_protein("P1", "MKVLA"), "Which? <protein>", "b", ["a", "b"],
                           metadata={"foldseek": "dvpqa", "accession": "P1"})
    assert prior.loglikelihood([question]) == [[-1.0, 0.0]] and seen == [("X", {})]


def test_closed_only_runs_share_a_board_with_grounded_runs_but_two_groundings_do_not(benchmark, tmp_path):
    bench("first_option", [str(benchmark)], tmp_path / "first", scoring=ScoringSettings(n_resamples=50))
    open_task = tmp_path / "describe.jsonl"
    open_task.write_text(json.dumps({"id": "d1", "protein": {"id": "P1", "sequence": "MKV"},
                                     "instruction": "Describe <protein>.", "reference": "An ATP binding protein."})
                         + "\n")
    with MODELS.registered("echo", EchoModel, source="tests"):
        bench("echo", [str(open_task)], tmp_path / "echo", scoring=ScoringSettings(n_resamples=50))
    runs = [load_run(tmp_path / name / "results.json") for name in ("first", "echo")]
    board = build_board(runs, n_resamples=50)
    assert board["metric_profile"]["grounding"] == runs[1].profile["grounding"]
    other = json.loads((tmp_path / "echo/results.json").read_text())
    other["metric_profile"]["grounding"]["go_fingerprint"] = "another"
    other["model"]["name"] = "echo2"
    (tmp_path / "echo2").mkdir()
    (tmp_path / "echo2/results.json").write_text(json.dumps(other))
    with pytest.raises(DataError, match="the results use different metric profiles"):
        build_board(runs + [load_run(tmp_path / "echo2/results.json")], n_resamples=50)


def test_the_option_prior_scores_each_batch_once(benchmark, tmp_path):
    calls = []

    class Counting(LengthReader):
        def loglikelihood(self, samples):
            calls.append(len(samples))
            return super().loglikelihood(samples)

    with MODELS.registered("counting", Counting, source="tests"):
        bench("option_prior", [str(benchmark)], tmp_path / "prior", model_args={"model": "counting"}, batch_size=4,
              scoring=ScoringSettings(n_resamples=50, closed_methods={"*": "loglikelihood"}))
    assert sum(calls) == 12  # the answers and the likelihood scores of a batch come from one call
