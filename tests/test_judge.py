"""The LLM judge against a chat-completions server on 127.0.0.1 that the tests start: scripted grades, malformed
JSON, 429 with Retry-After, a 500, a timeout; the scores, the cache, resume after SIGKILL, the key kept out."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sepit.cli import main
from sepit.errors import InputError
from sepit.evaluation.judge import JudgeSettings, load_rubric, parse_reply
from sepit.evaluation.scoring import ScoringSettings
from sepit.registry import MODELS
from fake_models import CoinModel
from local_server import QuietHandler, bypass_proxy, start

KEY = "sk-judge-test-do-not-log-7391"
QUESTION = "What does <protein> do?"
REFERENCE = "It binds metal ions."
# answer -> what the server does; the grade of an answer it does not know is 10 for the reference, else 1
ANSWERS = {"o1": "good-10", "o2": "good-10", "o3": "good-2", "o4": "fence", "o5": "garbage", "o6": "busy",
           "o7": "broken", "o8": "slow"}


class JudgeServer:
    """Grades `good-N` N; `fence` first wraps its JSON in a code fence, `garbage` never answers in JSON, `busy`
    first answers 429 (Retry-After: 0), `broken` first 500, `slow` first answers after the client's timeout.
    With `hang_at` k, the k-th request waits until `release` is set (a run killed while it waits)."""

    def __init__(self):
        self.requests, self.hang_at, self.release, self.hanging = [], None, threading.Event(), threading.Event()
        server = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"auth": self.headers.get("Authorization"), "body": body})
                if server.hang_at == len(server.requests):
                    server.hanging.set()
                    server.release.wait(20)
                reference, answer = re.search(r"Reference answer: (.*)\nAnswer to grade: (.*)",
                                              body["messages"][1]["content"]).groups()
                first = sum(r["body"]["messages"][1] == body["messages"][1] for r in server.requests) == 1
                retry = len(body["messages"]) > 2
                if answer == "busy" and first:
                    return self.reply(429, {"error": "slow down"}, {"Retry-After": "0"})
                if answer == "broken" and first:
                    return self.reply(500, {"error": "oops"})
                if answer == "slow" and first:
                    time.sleep(1.0)
                grade = {"fence": 6, "busy": 5, "broken": 4, "slow": 3}.get(answer)
                if answer.startswith("good-"):
                    grade = int(answer[5:])
                elif grade is None:
                    grade = 10 if answer == reference else 1
                content = json.dumps({"score": grade, "reason": f"graded {answer}"})
                if answer == "garbage":
                    content = "I would say 7/10."
                elif answer == "fence" and not retry:
                    content = f"```json\n{content}\n```"
                self.reply(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

            def reply(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (the timeout case)
                    pass

        self.httpd, self.url = start(Handler)


@pytest.fixture
def server(monkeypatch, tmp_path):
    bypass_proxy(monkeypatch)
    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    fake = JudgeServer()
    yield fake
    fake.release.set()
    fake.httpd.shutdown()


def judge_option(server, tmp_path, model="judge-a") -> str:
    return json.dumps({"model": model, "base_url": server.url, "api_key_env": "JUDGE_TEST_KEY",
                       "cache_dir": str(tmp_path / "judge-cache"),
                       "retries": {"retry_wait": 0.0, "requests_per_minute": 1e9, "timeout": 0.5}})


def write_inputs(tmp_path, answers=ANSWERS, model="m1"):
    """A task file with a test split of open questions, and one predictions file answering it."""
    tasks = [{"id": sid, "task": "tiny_open", "split": "test", "protein": {"id": sid, "sequence": "MKTAYIAKQR"},
              "instruction": QUESTION, "reference": REFERENCE} for sid in answers]
    (tmp_path / "tiny.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    rows = [{"task": "tiny_open", "id": sid, "prediction": answer, "reference": REFERENCE, "kind": "open",
             "choices": None, "model": model} for sid, answer in answers.items()]
    folder = tmp_path / f"predictions-{model}"
    folder.mkdir(exist_ok=True)
    (folder / "tiny_open.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def score_args(tmp_path, predictions, output, judge):
    return ["score", "--predictions", str(predictions), "--tasks", f"[{tmp_path / 'tiny.jsonl'}]", "--output",
            str(output), "--scoring.leakage", "false", "--scoring.entities", "off", "--scoring.n_resamples", "50",
            "--scoring.judge", judge]


def test_replies_are_parsed_strictly():
    assert parse_reply(' {"score": 7, "reason": "right family"}\n')[0] == (7, "right family", None)
    for reply in ('```json\n{"score": 7, "reason": "x"}\n```', '{"score": 7}', '{"score": 7.0, "reason": "x"}',
                  '{"score": 11, "reason": "x"}', '{"score": true, "reason": "x"}', '{"score": "7", "reason": "x"}',
                  '{"score": 7, "reason": "two\\nlines"}', '{"score": 7, "reason": "x", "extra": 1}',
                  'Score: 7', '{"score": 7, "reason": "x"} and more'):
        verdict, problem = parse_reply(reply)
        assert verdict is None and problem, reply


def test_rubrics_are_versioned_files(tmp_path):
    rubric = load_rubric("default")
    assert rubric.version == "default-v1" and '{"score": <integer 0-10>' in rubric.text
    assert "version:" not in rubric.text
    with pytest.raises(InputError, match="no rubric 'strict'"):
        ScoringSettings(judge=JudgeSettings(model="m", rubric="strict"))
    (tmp_path / "mine.md").write_text("Grade it.\n")
    with pytest.raises(InputError, match="first line must name its version"):
        ScoringSettings(judge=JudgeSettings(model="m", rubric=str(tmp_path / "mine.md")))
    (tmp_path / "mine.md").write_text("version: mine-v2\nGrade it.\n")
    assert load_rubric(str(tmp_path / "mine.md")).version == "mine-v2"
    assert JudgeSettings(model="m", retries={"max_retries": 1}).retries.max_retries == 1


def test_a_bad_judge_setting_is_one_line_on_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["score", "--predictions", str(tmp_path), "--scoring.judge", "{model: m, rubric: nope}"])
    assert stop.value.code == 1
    assert capsys.readouterr().err.strip() == ("sepit: error: --scoring.judge.rubric: no rubric 'nope'. Name a shipped "
                                               "rubric (default) or give the path of a rubric file.")


def test_judge_scores_survive_server_trouble_and_a_rerun_costs_nothing(server, tmp_path, capsys):
    predictions = write_inputs(tmp_path)
    main(score_args(tmp_path, predictions, tmp_path / "run" / "results.json", judge_option(server, tmp_path)))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    task = results["tasks"]["tiny_open"]
    # 10, 10, 2, 6 (fence retried), 5 (after 429), 4 (after 500), 3 (after a timeout); garbage fails twice
    assert task["metrics"]["judge_score"] == pytest.approx(10 * (10 + 10 + 2 + 6 + 5 + 4 + 3) / 7)
    assert task["metrics"]["judge_failure"] == pytest.approx(100 / 8)
    lo, hi = task["ci"]["judge_score"]
    assert lo <= task["metrics"]["judge_score"] <= hi
    assert results["metric_profile"]["judge"] == {"model": "judge-a", "base_url": server.url, "rubric": "default",
                                                  "rubric_version": "default-v1", "temperature": 0.0,
                                                  "max_tokens": 256}
    logs = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "samples" / "tiny_open.jsonl").open())}
    assert logs["o4"]["judge_score"] == 60.0 and logs["o4"]["judge_reason"] == "graded fence"
    assert logs["o5"]["judge_score"] is None and "two malformed replies" in logs["o5"]["judge_error"]
    # o1 and o2 ask the same prompt: one call; fence, garbage, busy, broken and slow two each
    assert len(server.requests) == 12
    first = server.requests[0]
    assert first["auth"] == f"Bearer {KEY}" and first["body"]["temperature"] == 0.0
    assert first["body"]["model"] == "judge-a"
    assert "Question: What does <protein> do?" in first["body"]["messages"][1]["content"]
    out = capsys.readouterr().out
    assert "8 answers, 7 distinct prompts, 0 cached, 7 calls to make" in out and "judge_score 57.14" in out
    assert "whole run: 8 answers in 1 open tasks, 7 distinct prompts, 7 calls to make" in out  # before any call
    assert out.index("whole run") < out.index("on tiny_open")

    main(score_args(tmp_path, predictions, tmp_path / "again" / "results.json", judge_option(server, tmp_path)))
    assert len(server.requests) == 12  # every verdict, the failure included, came from the cache
    out = capsys.readouterr().out
    assert "7 cached, 0 calls to make" in out and "7 distinct prompts, 0 calls to make" in out
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["tasks"]["tiny_open"]["metrics"] == task["metrics"]

    # another judge model or rubric version is another cache key
    main(score_args(tmp_path, predictions, tmp_path / "b" / "results.json", judge_option(server, tmp_path, "judge-b")))
    assert len(server.requests) == 12 + 9  # the server's trouble was the first time only; two malformed replies

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any("judge-cache" in str(p) for p in written)
    for path in written:
        assert KEY not in path.read_text(errors="replace"), path
    assert KEY not in capsys.readouterr().out


KILLED = """
import sys
from sepit.cli import main
main(sys.argv[1:])
"""


def test_a_run_killed_mid_judging_resumes_without_asking_twice(server, tmp_path, capsys):
    answers = {f"o{i}": f"good-{i}" for i in range(6)}
    predictions = write_inputs(tmp_path, answers)
    args = score_args(tmp_path, predictions, tmp_path / "run" / "results.json", judge_option(server, tmp_path))
    server.hang_at = 4
    process = subprocess.Popen([sys.executable, "-c", KILLED, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).parents[1])
    assert server.hanging.wait(60), process.communicate()[0]
    process.kill()  # SIGKILL while the fourth judgement is in flight
    output = process.communicate()[0]
    assert process.returncode == -9, output
    server.release.set()
    assert len(list((tmp_path / "judge-cache" / "verdicts").glob("*.json"))) == 3
    assert not (tmp_path / "run" / "results.json").exists()

    main(args)
    assert "6 distinct prompts, 3 cached, 3 calls to make" in capsys.readouterr().out
    assert len(server.requests) == 7  # six prompts, and the one whose answer the killed run never received
    asked = [json.dumps(r["body"], sort_keys=True) for r in server.requests]
    assert len(set(asked)) == 6
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["tasks"]["tiny_open"]["metrics"]["judge_score"] == pytest.approx(10 * sum(range(6)) / 6)
    assert KEY not in output


def test_bench_judges_its_open_tasks_and_the_board_keeps_each_judge_apart(server, tmp_path, capsys):
    from sepit_leaderboard.board import build_board
    from sepit_leaderboard.results import find_results, load_run
    from sepit_leaderboard import tables

    tasks = [{"id": f"o{i}", "task": "tiny_open", "split": "test", "protein": {"id": f"p{i}", "sequence": "MKTAYIAKQR"},
              "instruction": QUESTION, "reference": f"It binds metal ion {i}."} for i in range(6)]
    tasks += [{"id": f"c{i}", "task": "tiny_closed", "split": "test", "protein": {"id": f"p{i}", "sequence": "MKTAYIAKQR"},
               "instruction": "Is <protein> an enzyme?", "reference": "yes", "choices": ["yes", "no"]} for i in range(4)]
    (tmp_path / "tiny.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    common = ["--tasks", f"[{tmp_path / 'tiny.jsonl'}]", "--scoring.leakage", "false", "--scoring.entities", "off",
              "--scoring.n_resamples", "50"]
    with MODELS.registered("coin", CoinModel, source="tests/test_judge.py"):
        main(["bench", "--model", "coin", "--output", str(tmp_path / "runs" / "coin"), *common,
              "--scoring.judge", judge_option(server, tmp_path)])
    results = json.loads((tmp_path / "runs" / "coin" / "results.json").read_text())
    assert "judge_score" not in results["tasks"]["tiny_closed"]["metrics"]  # closed answers are exact matches
    logs = [json.loads(line) for line in (tmp_path / "runs" / "coin" / "samples" / "tiny_open.jsonl").open()]
    predictions = {json.loads(line)["id"]: json.loads(line) for line in
                   (tmp_path / "runs" / "coin" / "predictions" / "tiny_open.jsonl").open()}
    expected = [100.0 if predictions[log["id"]]["prediction"] == predictions[log["id"]]["reference"] else 10.0
                for log in logs]
    assert [log["judge_score"] for log in logs] == expected
    assert results["tasks"]["tiny_open"]["metrics"]["judge_score"] == pytest.approx(sum(expected) / 6)

    # the same predictions judged by another model: a second table, never one column with the first
    main(["score", "--predictions", str(tmp_path / "runs" / "coin" / "predictions"), "--output",
          str(tmp_path / "other" / "results.json"), *common, "--scoring.judge",
          judge_option(server, tmp_path, "judge-b")])
    other = json.loads((tmp_path / "other" / "results.json").read_text())
    other["model"]["name"] = "coin-again"
    (tmp_path / "other" / "results.json").write_text(json.dumps(other))
    runs = [load_run(p) for p in find_results(str(tmp_path / "runs"))] + [load_run(tmp_path / "other" / "results.json")]
    board = build_board(runs, n_resamples=50)
    assert [t["label"] for t in board["judge"]] == ["LLM judge (judge-a, default-v1)", "LLM judge (judge-b, default-v1)"]
    first = board["judge"][0]
    assert [r["model"] for r in first["rows"]] == ["coin"] and first["tasks"] == ["tiny_open"]
    assert first["rows"][0]["tasks"]["tiny_open"]["value"] == results["tasks"]["tiny_open"]["metrics"]["judge_score"]
    coin = next(r for r in board["rows"] if r["model"] == "coin")
    assert coin["average"] == pytest.approx((results["tasks"]["tiny_open"]["metrics"]["rougeL"]
                                             + results["tasks"]["tiny_closed"]["metrics"]["accuracy"]) / 2)
    text = tables.markdown(board)
    assert "## LLM judge (judge-a, default-v1)" in text and "## LLM judge (judge-b, default-v1)" in text
    from sepit_leaderboard.page import render

    page = render(board, {}, "now")
    assert "<h2>LLM judge (judge-a, default-v1)</h2>" in page and "<h2>LLM judge (judge-b, default-v1)</h2>" in page
    assert f"{first['rows'][0]['tasks']['tiny_open']['value']:.2f} <span class=ci>failures" in page
    with pytest.raises(InputError, match="judge"):
        build_board(runs, open_metric="judge_score", n_resamples=50)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
