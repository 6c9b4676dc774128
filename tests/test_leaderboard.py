"""`sepit leaderboard build`: the board's numbers come from the results files, every format prints the same
numbers, significance agrees with a direct paired bootstrap, and inconsistent inputs stop with a clear error."""

import csv
import json
import re
import shutil

import numpy as np
import pytest

from sepit_leaderboard.board import build_board
from sepit_leaderboard.results import find_results, load_run
from sepit_leaderboard import tables
from sepit_leaderboard.significance import compare, paired_draws, task_seed
from sepit.cli import main
from sepit.data.errors import DataError
from sepit.tasks import get_task
from leaderboard_data import MODELS, N, write_all, write_run

TASKS = ["toy_caption", "toy_location", "toy_membrane"]  # open first, then closed, by name


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("board")
    runs = write_all(folder / "runs")
    main(["leaderboard", "build", "--results", str(runs), "--output", str(folder / "out"), "--n_resamples", "500"])
    return runs, folder / "out"


def _results(runs, model):
    return json.loads((runs / model / "results.json").read_text())


def _csv(out):
    with open(out / "leaderboard.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_writes_every_format(built):
    _, out = built
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.json", "slices.csv",
                 "index.html", "plots/tasks.png", "plots/tasks.svg", "plots/radar.png", "plots/radar.svg"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "plots/tasks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "plots/radar.svg").read_text()
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table id=board" in page
    tex = (out / "leaderboard.tex").read_text()
    assert r"\toprule" in tex and r"toy\_caption" in tex and "toy_caption" not in tex


def test_rows_ranks_and_averages_come_from_the_results_files(built):
    runs, out = built
    rows = {r["model"]: r for r in _csv(out)}
    assert [r["model"] for r in _csv(out)] == ["oracle", "retrieval", "majority", "partial"]
    assert [rows[m]["rank"] for m in ("oracle", "retrieval", "majority", "partial")] == ["1", "2", "3", ""]
    for model in ("oracle", "retrieval", "majority"):
        tasks = _results(runs, model)["tasks"]
        headline = [tasks["toy_caption"]["metrics"]["entity_f1"], tasks["toy_location"]["metrics"]["accuracy"],
                    tasks["toy_membrane"]["metrics"]["accuracy"]]
        assert rows[model]["average"] == f"{np.mean(headline):.2f}"
        for task, value in zip(TASKS, headline):
            assert rows[model][task] == f"{value:.2f}"
            assert rows[model][f"{task}_n"] == str(N)
    assert rows["partial"]["average"] == "" and rows["partial"]["toy_caption_n"] == "20"
    assert rows["oracle"]["params_total"] == str(MODELS["oracle"][1]) and rows["oracle"]["modality"] == "seq+structure"


def test_markdown_table_matches_the_csv_numbers(built):
    _, out = built
    lines = (out / "leaderboard.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Rank"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    body = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        body.append([c.strip() for c in line.strip("|").split("|")])
    by_model = {r["model"]: r for r in _csv(out)}
    assert [row[1] for row in body] == list(by_model)
    for row in body:
        expected = by_model[row[1]]
        assert re.findall(r"-?\d+\.\d+", row[header.index("Average")]) == ([expected["average"]] if expected["average"]
                                                                           else [])
        for task in TASKS:
            cell = row[next(i for i, h in enumerate(header) if h.startswith(task))]
            numbers = re.findall(r"-?\d+\.\d+", cell)
            assert numbers == [expected[task], expected[f"{task}_ci_low"], expected[f"{task}_ci_high"]], (row[1], task)


def test_significance_agrees_with_a_direct_paired_bootstrap(built):
    runs, out = built
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["reference"] == "oracle"
    rows = {r["model"]: r for r in board["rows"]}

    def per_sample(model, task):
        logs = [json.loads(line) for line in (runs / model / "samples" / f"{task}.jsonl").read_text().splitlines()]
        # the open task's headline is entity F1, which a sample whose reference names nothing does not have
        return {r["id"]: (r["entity_f1"] if task == "toy_caption" else 100.0 * r["correct"]) for r in logs
                if task != "toy_caption" or r["entity_f1"] is not None}

    for model in ("retrieval", "majority", "partial"):
        for task in TASKS:
            a, b = per_sample(model, task), per_sample("oracle", task)
            shared = sorted(a.keys() & b.keys())
            d = np.array([a[i] - b[i] for i in shared])
            counts = np.random.default_rng(task_seed(0, task)).multinomial(len(d), np.full(len(d), 1 / len(d)), size=500)
            draws = counts @ d / len(d)
            p = min(1.0, 2 * min((np.sum(draws <= 0) + 1) / 501, (np.sum(draws >= 0) + 1) / 501))
            versus = rows[model]["vs_reference"][task]
            assert versus["diff"] == pytest.approx(d.mean(), abs=1e-9)
            assert versus["p_value"] == pytest.approx(p, abs=1e-12)
            assert versus["n_shared"] == len(shared) <= (20 if model == "partial" else N)
    # Ties: a cell is marked exactly when its test against the task's best gives p >= 0.05.
    for row in board["rows"]:
        for cell in row["tasks"].values():
            assert cell["tied"] is (cell["best"] or cell["p_vs_best"] >= 0.05)
    assert rows["majority"]["average_tied"] is False and rows["majority"]["average_p_vs_best"] < 0.01


def test_tasks_of_equal_size_draw_different_resamples():
    """Each task's resamples have their own seed, so averaging over tasks averages independent draws."""
    a = {f"s{i}": float(i % 3) for i in range(30)}
    b = {f"s{i}": float(i % 5) for i in range(30)}
    first, second = (paired_draws(a, b, 200, task_seed(0, task)) for task in ("task_a", "task_b"))
    assert first.diff == second.diff and not np.array_equal(first.draws, second.draws)
    assert task_seed(0, "task_a") == task_seed(0, "task_a") != task_seed(1, "task_a")


def test_identical_answers_are_not_different():
    a = {f"s{i}": float(i % 3) for i in range(30)}
    result = compare([paired_draws(a, dict(a), 300, seed=1)])
    assert (result.diff, result.p_value, result.n_shared) == (0.0, 1.0, 30)
    assert paired_draws(a, {"other": 1.0}) is None


def test_chosen_reference_and_identity_slices_from_the_leakage_report(built, tmp_path):
    runs, _ = built
    copy = shutil.copytree(runs, tmp_path / "runs")
    path = copy / "majority" / "results.json"
    results = json.loads(path.read_text())
    bins = {"<30": {"n": 30, "metrics": {"entity_f1": 12.5}}, ">=90": {"n": 10, "metrics": {"entity_f1": 95.0}}}
    results["tasks"]["toy_caption"]["leakage"] = {"bins": bins, "median_identity": 20.0, "unknown": 0}
    path.write_text(json.dumps(results))
    board = build_board([load_run(p) for p in find_results(copy)], reference="retrieval", n_resamples=100)
    assert board["reference"] == "retrieval"
    assert {r["model"]: r["vs_reference"] is None for r in board["rows"]}["retrieval"]
    assert board["slices"]["identity"] == {"majority": {"toy_caption": {"<30": {"n": 30, "value": 12.5},
                                                                        ">=90": {"n": 10, "value": 95.0}}}}
    with pytest.raises(DataError, match="no model named 'nobody'.*majority, oracle, partial, retrieval"):
        build_board([load_run(p) for p in find_results(copy)], reference="nobody")


def test_structure_and_length_slices_on_a_registered_task(tmp_path):
    task = get_task("sp14_membrane")
    samples = task.samples("test")
    rows = [{"task": s.task, "id": s.id, "prediction": "yes", "reference": s.reference, "kind": "closed",
             "choices": list(s.choices), "model": "always-yes"} for s in samples]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["score", "--predictions", str(tmp_path / "p.jsonl"), "--output", str(tmp_path / "run" / "results.json"),
          "--scoring.leakage", "false", "--scoring.n_resamples", "10"])
    board = build_board([load_run(tmp_path / "run" / "results.json")], n_resamples=10)
    structure = board["slices"]["structure"]["always-yes"]["sp14_membrane"]
    length = board["slices"]["length"]["always-yes"]["sp14_membrane"]
    right = {s.id: 100.0 * (s.reference == "yes") for s in samples}
    with_coords = [right[s.id] for s in samples if s.protein.coords is not None]
    assert structure["with structure"] == {"n": len(with_coords), "value": pytest.approx(np.mean(with_coords))}
    short = [right[s.id] for s in samples if len(s.protein.sequence) < 200]
    assert length["<200"] == {"n": len(short), "value": pytest.approx(np.mean(short))}
    assert sum(b["n"] for b in length.values()) == len(samples)
    assert any("retrieval" in note for note in board["notes"])  # no retrieval baseline given: the board says so


def test_inconsistent_results_are_refused(built, tmp_path):
    runs, _ = built
    copy = shutil.copytree(runs, tmp_path / "runs")
    twice = shutil.copytree(copy / "majority", tmp_path / "runs" / "majority-again")
    with pytest.raises(DataError, match=r"reports task 'toy_caption' of model 'majority', and so does"):
        build_board([load_run(p) for p in find_results(copy)])
    shutil.rmtree(twice)
    path = copy / "retrieval" / "results.json"
    results = json.loads(path.read_text())
    results["metric_profile"]["name"] = "corpus_v1"
    path.write_text(json.dumps(results))
    with pytest.raises(DataError, match=r"different metric profiles.*--profile"):
        build_board([load_run(p) for p in find_results(copy)])
    board = build_board([load_run(p) for p in find_results(copy)], profile="sepit_v1", n_resamples=10)
    assert "retrieval" not in {r["model"] for r in board["rows"]}
    results["metric_profile"]["name"] = "sepit_v1"
    results["tasks"]["toy_caption"]["version"] = "2"
    path.write_text(json.dumps(results))
    with pytest.raises(DataError, match=r"task 'toy_caption' is version '2' but .* has version None"):
        build_board([load_run(p) for p in find_results(copy)])
    with pytest.raises(DataError, match="no results.json found"):
        find_results(tmp_path / "nothing-*")


def test_build_command_prints_the_board_and_the_page(built, tmp_path, capsys):
    runs, _ = built
    main(["leaderboard", "build", "--results", f"{runs}/*/results.json", "--output", str(tmp_path / "b"),
          "--plots", "false", "--n_resamples", "50"])
    printed = capsys.readouterr().out
    assert "| 1 | oracle |" in printed and str(tmp_path / "b" / "index.html") in printed
    assert not (tmp_path / "b" / "plots").exists()


def test_a_partial_run_does_not_set_the_bar(built, tmp_path):
    runs, _ = built
    copy = shutil.copytree(runs, tmp_path / "runs")
    path = copy / "partial" / "results.json"
    results = json.loads(path.read_text())
    results["tasks"]["toy_membrane"]["metrics"]["accuracy"] = 99.0  # above every complete run
    path.write_text(json.dumps(results))
    board = build_board([load_run(p) for p in find_results(copy)], n_resamples=50)
    cells = {r["model"]: r["tasks"]["toy_membrane"] for r in board["rows"]}
    assert cells["oracle"]["best"] and not cells["partial"]["best"]
    assert cells["partial"]["p_vs_best"] is not None


def test_structure_ablation_compares_only_the_proteins_with_coordinates(tmp_path):
    samples = [s for name in ("sp14_membrane", "sp14_go_cc") for s in get_task(name).samples("test")]
    has = {s.id for s in samples if s.protein.coords is not None}
    runs = []
    for model, answer in (("sepit", lambda s: s.reference if s.id in has else "yes"),
                          ("sepit-no-structure", lambda s: "yes")):
        rows = [{"task": s.task, "id": s.id, "prediction": answer(s), "reference": s.reference, "kind": "closed",
                 "choices": list(s.choices), "model": model} for s in samples]
        (tmp_path / f"{model}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        main(["score", "--predictions", str(tmp_path / f"{model}.jsonl"), "--output",
              str(tmp_path / model / "results.json"), "--scoring.leakage", "false", "--scoring.n_resamples", "10"])
        runs.append(load_run(tmp_path / model / "results.json"))
    board = build_board(runs, n_resamples=200, structure_pairs=[("sepit", "sepit-no-structure")])
    ablation, = board["structure_ablations"]
    for name in ("sp14_membrane", "sp14_go_cc"):
        with_coords = [s for s in samples if s.task == name and s.id in has]
        result = ablation["tasks"][name]
        assert result["n"] == len(with_coords) > 0
        assert result["model"] == 100.0
        assert result["ablated"] == pytest.approx(100.0 * np.mean([s.reference == "yes" for s in with_coords]))
        assert result["diff"] == pytest.approx(result["model"] - result["ablated"])
        draws = paired_draws({s.id: 100.0 for s in with_coords},
                             {s.id: 100.0 * (s.reference == "yes") for s in with_coords}, 200, task_seed(0, name))
        assert result["ci"] == pytest.approx(list(compare([draws]).ci))
    assert ablation["average"]["n_shared"] == sum(t["n"] for t in ablation["tasks"].values())
    from sepit_leaderboard.tables import markdown
    assert "## Structure: sepit vs sepit-no-structure on the proteins with coordinates" in markdown(board)
    with pytest.raises(DataError, match="no model named 'other'"):
        build_board(runs, n_resamples=10, structure_pairs=[("sepit", "other")])


def test_published_files_name_results_relative_to_the_results_folder(built):
    runs, out = built
    board = json.loads((out / "leaderboard.json").read_text())
    assert {s for r in board["rows"] for s in r["sources"]} == {f"{m}/results.json" for m in MODELS}
    for name in ("leaderboard.json", "leaderboard.md", "index.html"):
        assert str(runs) not in (out / name).read_text(), name


def test_every_model_shows_its_gap_to_the_question_only_control(built, tmp_path):
    runs, _ = built
    copy = shutil.copytree(runs, tmp_path / "runs")
    path = copy / "majority" / "results.json"
    results = json.loads(path.read_text())
    results["model"].update(name="question-majority", fingerprint="qmaj")
    path.write_text(json.dumps(results))
    board = build_board([load_run(p) for p in find_results(copy)], n_resamples=100)
    rows = {r["model"]: r for r in board["rows"]}
    assert board["control"] == "question-majority" and rows["question-majority"]["vs_control"] is None
    for model in ("oracle", "retrieval"):
        gap = rows[model]["vs_control"]["average"]
        assert gap["diff"] == pytest.approx(rows[model]["average"] - rows["question-majority"]["average"])
        assert gap["ci"][0] <= gap["diff"] <= gap["ci"][1]
    markdown = tables.markdown(board)
    assert "| vs question-majority |" in markdown and "## Gap to the question-only control" in markdown
    without = build_board([load_run(p) for p in find_results(runs)], n_resamples=100)
    assert without["control"] is None
    assert any("no question-only control (question-majority)" in n for n in without["notes"])


def test_agreement_of_a_model_based_score_reaches_the_results_and_the_board(tmp_path, monkeypatch):
    """Scoring reports, per task, the rank agreement of each model-based score with the grounded F1; the board
    shows what the results files say. BLEU-2 stands in for a model-based score here (no judge runs in tests)."""
    from scipy.stats import spearmanr

    import sepit.metrics.agreement as agreement

    monkeypatch.setattr(agreement, "PAIRS", (("bleu2", "entity_f1"), ("judge_score", "entity_f1")))
    run = write_run(tmp_path / "runs", "retrieval")
    found = json.loads(run.read_text())["tasks"]["toy_caption"]["agreement"]
    assert set(found) == {"bleu2~entity_f1"}  # no judge scores in these logs
    logs = [json.loads(line) for line in (run.parent / "samples" / "toy_caption.jsonl").read_text().splitlines()]
    pairs = [(log["bleu2"], log["entity_f1"]) for log in logs if log.get("entity_f1") is not None]
    assert found["bleu2~entity_f1"]["n"] == len(pairs)
    assert found["bleu2~entity_f1"]["spearman"] == pytest.approx(spearmanr(*zip(*pairs)).statistic)
    board = build_board([load_run(run)], n_resamples=100)
    assert board["agreement"] == [{"model": "retrieval", "task": "toy_caption", "pair": "bleu2~entity_f1",
                                   **found["bleu2~entity_f1"]}]
    assert "## Agreement of model-based scores with the grounded F1" in tables.markdown(board)
    from sepit_leaderboard.page import render

    page = render(board, {}, "now")
    rho = f"{found['bleu2~entity_f1']['spearman']:+.2f}"
    assert "<table id=agreement" in page and f"<td class='text' data-sort='toy_caption'>toy_caption</td>" in page
    assert rho in page
