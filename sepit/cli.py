"""`sepit`: one thin entry point; each subcommand is a typed function in sepit.commands.

Bad input of any kind ends in one line on stderr, `sepit: error: <what is wrong>. <the fix>`: an `InputError`
(sepit/errors.py) or an OSError from the command, exit status 1; a command line that does not parse (unknown
option, wrong type), exit status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import inspect
import re
import sys
from argparse import ArgumentError

from sepit.allocator import keep_freed_memory
from sepit.errors import InputError
from sepit.registry import COMMANDS


# Boolean options that read as flags (`--json`); jsonargparse itself wants `--json true`.
FLAGS = ("--json", "--fresh")
TRAINING = ("fit", "validate", "test")  # Lightning's CLI: sepit.training.cli
USER_ERRORS = (InputError, OSError)  # a missing or unreadable file is the user's to fix too
DESCRIPTION = ("SEPIT-Bench. Training and evaluation of LightningModules: sepit {fit,validate,test} "
               "--config configs/...yaml (see `sepit fit --help`). Benchmark commands:")


def bare_flags(argv: list[str]) -> list[str]:
    """`--json` -> `--json=true` unless a true/false value follows."""
    out = []
    for i, arg in enumerate(argv):
        following = argv[i + 1].lower() if i + 1 < len(argv) else ""
        out.append(f"{arg}=true" if arg in FLAGS and following not in ("true", "false", "yes", "no") else arg)
    return out


def leading_argument(argv: list[str], commands: dict) -> list[str]:
    """`sepit leaderboard validate SUB` -> `... --submission SUB`, `sepit convert official SRC OUT` -> `...
    --src SRC --out OUT`: a command's leading required arguments may be given without their option names, in
    order, as docs/architecture.md writes them."""
    node, i = commands, 0
    while isinstance(node, dict) and i < len(argv) and argv[i] in node:
        node, i = node[argv[i]], i + 1
    if not callable(node):
        return argv
    required = [p.name for p in inspect.signature(node).parameters.values() if p.default is inspect.Parameter.empty]
    named = []
    while i < len(argv) and not argv[i].startswith("-") and len(named) // 2 < len(required):
        named += [f"--{required[len(named) // 2]}", argv[i]]
        i += 1
    return argv[:i - len(named) // 2] + named + argv[i:]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    keep_freed_memory()
    if argv and argv[0] in TRAINING:
        return train(argv)
    if argv and argv[0] == "predict":
        fail(InputError("sepit predict", "answers come from `sepit bench`, which journals, resumes and scores them",
                       "Run `sepit bench --model <checkpoint.ckpt> --tasks <tasks> --output <folder>`."))
    from jsonargparse import auto_cli

    from sepit.commands import convert, data
    from sepit.commands.pretrain import pretrain
    from sepit.commands.bench import bench
    from sepit.commands.demo import demo
    from sepit.commands.score import score

    commands = {"data": {"_help": "Build, inspect, check and convert benchmark data.",
                         "info": data.info, "export": data.export, "check": data.check,
                         "manifest": data.manifest, "formats": data.formats},
                "convert": {"_help": "Convert checkpoints made elsewhere.", "official": convert.official},
                "pretrain": pretrain, "bench": bench, "score": score, "demo": demo}
    try:
        for name in COMMANDS.names():  # plug-in command groups, e.g. `sepit leaderboard`
            commands.setdefault(name, COMMANDS.get(name))
        auto_cli(commands, args=bare_flags(leading_argument(argv, commands)), as_positional=False,
                 description=DESCRIPTION, exit_on_error=False)
    except ArgumentError as err:
        fail(f"{parse_error(str(err))}. {help_hint(argv, commands)}", status=2)
    except USER_ERRORS as err:
        fail(err)


def train(argv: list[str]) -> None:
    """The LightningCLI subcommands (sepit.training.cli), with the same one-line errors as the others."""
    from sepit.training.cli import run

    try:
        run(argv)
    except ArgumentError as err:
        fail(f"{parse_error(str(err))}. {help_hint(argv, dict.fromkeys(TRAINING))}", status=2)
    except Exception as err:
        # jsonargparse wraps what a model's constructor raised (with a dump of the whole config): the user
        # needs the InputError inside.
        cause = err
        while cause is not None and not isinstance(cause, USER_ERRORS):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        fail(cause)


# The lines of jsonargparse's nested report that repeat the type or echo the value, whole namespaces included.
REPORT_NOISE = re.compile(r"(Does not validate against any of the Union subtypes|Subtypes:|Errors:|Given value|"
                          r"Expected a <class 'NoneType'>|Problem with given class_path)")


def parse_error(report: str) -> str:
    """jsonargparse's report of a value that did not parse, as one line: the key (`model.lora.r`), the innermost
    problem and the value given. Its report nests one union per level and echoes the config."""
    keys, problems, given = [], [], ""
    for line in report.splitlines():
        line = line.strip().removeprefix("- ")
        key = re.match(r'Parser key "([^"]+)":\s*(.*)', line)
        if key:
            keys.append(key[1])
            line = key[2]
        if line.startswith("Given value: ") and not given and not re.match(r"\w+\(", line[13:]):
            given = line[13:]  # a plain value, not a Namespace(...) or NestedArg(...) echo
        if line and not REPORT_NOISE.match(line):
            problems.append(line)
    # Under a key the first problem is the innermost one; without, the lines are one message (a YAML error).
    problem = (problems[0] if keys else " ".join(problems)) if problems else "does not parse"
    if given and "Got value" not in problem:
        problem += f". Got value: {given}"
    problem = re.sub(r"an? typing\.Literal\[(.*?)\]", r"one of \1", problem)
    problem = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", problem).replace("a int", "an int").rstrip(".")
    return f"{'.'.join(keys)}: {problem}" if keys else problem


def help_hint(argv: list[str], commands: dict) -> str:
    """The fix for a command line that does not parse: the help of the (sub)command it names."""
    node, words = commands, []
    for arg in argv:
        if not isinstance(node, dict) or arg not in node:
            break
        node = node[arg]
        words.append(arg)
    return f"Run `sepit {' '.join([*words, '--help'])}` for the accepted options."


def fail(err: Exception | str, status: int = 1) -> None:
    print(f"sepit: error: {err}", file=sys.stderr)
    raise SystemExit(status) from None


if __name__ == "__main__":
    main()
