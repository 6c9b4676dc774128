"""Bad input of every kind through the real CLI: each ends in one line on stderr that names what is wrong and
the fix, never a traceback or jsonargparse's dump of the config (sepit/errors.py, docs/architecture.md)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sepit.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STAGE2 = str(CONFIGS / "sepit/tiny/stage2.yaml")  # a spliced encoder with experts
TEXT_LORA = str(CONFIGS / "baselines/tiny/text_llm_lora.yaml")  # the sequence as text, LoRA on the LLM


def bench(*options: str, model: str = "majority", tasks: str = "sp14_membrane") -> list[str]:
    return ["bench", "--model", model, "--tasks", tasks, "--output", "{tmp}/run", *options]


# (command line, what the message must name, the fix it must give, exit status). {tmp} is a fresh folder holding
# an empty folder and bad.jsonl, a task file whose one line is not JSON.
BAD_INPUTS = {
    "fit: lora with a spliced encoder (the issue's example)": (
        ["fit", "--config", STAGE2, "--model.init_args.lora", "{r: 4}"],
        "model.init_args.lora:", "Set lora: null", 1),
    "fit: top_k above num_experts": (
        ["fit", "--config", STAGE2, "--model.init_args.experts.top_k", "5"],
        "model.init_args.experts.top_k:", "Lower top_k", 1),
    "fit: LoRA rank 0": (
        ["fit", "--config", TEXT_LORA, "--model.init_args.lora.r", "0"],
        "model.init_args.lora.r:", "Set r to", 1),
    "fit: unknown sequence format": (
        ["fit", "--config", TEXT_LORA, "--model.init_args.sequence_format", "fasta"],
        "model.init_args.sequence_format: unknown sequence format 'fasta'", "Choose one of", 1),
    "fit: missing config file": (
        ["fit", "--config", "{tmp}/nope.yaml"], "{tmp}/nope.yaml:", "Give a YAML path", 1),
    "fit: LLM folder that does not exist": (
        ["fit", "--config", STAGE2, "--model.init_args.llm", "{tmp}/no-llm"],
        "{tmp}/no-llm: model not found", "Give a local file or folder", 1),
    "fit: a value of the wrong type": (
        ["fit", "--config", STAGE2, "--model.init_args.lora.r", "abc"],
        "lora.r: Expected an int. Got value: abc", "Run `sepit fit --help`", 2),
    "fit: unknown setting": (
        ["fit", "--config", STAGE2, "--model.init_args.nope", "3"],
        "Option 'nope' is not accepted", "Run `sepit fit --help`", 2),
    "bench: unknown model": (
        bench(model="nope"), "model 'nope': unknown", "Check the spelling", 1),
    "bench: unknown task": (
        bench(tasks="nope"), "task 'nope': unknown", "Check the spelling", 1),
    "bench: missing task file": (
        bench(tasks="{tmp}/tasks.jsonl"), "{tmp}/tasks.jsonl: task file not found",
        "Give task names", 1),
    "bench: bad shard": (bench("--shard", "3/2"), "--shard: '3/2'", "Write e.g. --shard 2/8", 1),
    "bench: unknown precision": (
        bench("--precision", "fp8"), "precision: Expected one of 'bf16', 'fp16', 'fp32'. Got value: fp8",
        "Run `sepit bench --help`", 2),
    "bench: batch size 0": (bench("--batch_size", "0"), "--batch_size: must be 1 or more", "Set e.g. 8", 1),
    "bench: no new token to generate": (
        bench("--generation.max_new_tokens", "0"), "--generation.max_new_tokens: must be 1 or more", "Set e.g. 256", 1),
    "bench: the batch size given as a decoding setting": (
        bench("--generation.batch_size", "4"), "--generation.batch_size: is the run's --batch_size",
        "Give --batch_size 4", 1),
    "bench: unknown model argument": (
        bench("--model_args", "{foo: 1}"), "model 'majority': takes no argument 'foo'", "Fix --model_args", 1),
    "bench: checkpoint that does not exist": (
        bench(model="{tmp}/last.ckpt"), "{tmp}/last.ckpt: checkpoint not found",
        "Give a .ckpt written by `sepit fit`", 1),
    "score: a folder without predictions": (
        ["score", "--predictions", "{tmp}/empty"], "{tmp}/empty: no predictions", "Point --predictions at", 1),
    "data check: a malformed line": (
        ["data", "check", "--path", "{tmp}/bad.jsonl"], "{tmp}/bad.jsonl, line 1: malformed JSON",
        "fix or remove this line", 1),
    "convert official: output not a .ckpt": (
        ["convert", "official", "{tmp}", "{tmp}/out.pt"], "{tmp}/out.pt: the output must be a .ckpt file",
        "Name it e.g.", 1),
    "leaderboard build: an empty folder": (
        ["leaderboard", "build", "--results", "{tmp}/empty"], "{tmp}/empty: no results.json found", "Point --results at", 1),
    "unknown command": (["nope"], "invalid choice: 'nope'", "Run `sepit --help`", 2),
}


def assert_one_message(err: str, names: str, fix: str) -> None:
    assert err.startswith("sepit: error: ") and err.count("\n") == 1, err  # one line, nothing before it
    assert "Traceback" not in err and "Namespace(" not in err and "Given value" not in err, err
    assert names in err and fix in err, err
    assert err.index(names) < err.index(fix)  # what is wrong first, then the fix


@pytest.mark.parametrize("argv, names, fix, status", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_ends_in_one_message(argv, names, fix, status, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))  # nothing is built: each fails before
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    argv, names = [arg.replace("{tmp}", str(tmp_path)) for arg in argv], names.replace("{tmp}", str(tmp_path))
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == status
    assert_one_message(capsys.readouterr().err, names, fix)


@pytest.mark.slow
def test_the_console_script_prints_the_issue_example_as_one_line(tmp_path):
    """The installed entry point, in a fresh process: no log line or warning before the message either."""
    result = subprocess.run([sys.executable, "-m", "sepit.cli", "fit", "--config", STAGE2, "--model.init_args.lora",
                             "{r: 4}"], capture_output=True, text=True, env={**os.environ, "SEPIT_CACHE": str(tmp_path)})
    assert result.returncode == 1 and result.stdout == ""
    assert_one_message(result.stderr, "model.init_args.lora:", "Set lora: null")
