"""`sepit`: one thin entry point; each subcommand is a typed function in sepit.commands."""

from __future__ import annotations

import inspect
import sys

from sepit.allocator import keep_freed_memory
from sepit.data.errors import DataError
from sepit.metrics.text import MetricError
from sepit.registry import COMMANDS, RegistryError


# Boolean options that read as flags (`--json`); jsonargparse itself wants `--json true`.
FLAGS = ("--json", "--fresh")
TRAINING = ("fit", "validate", "test")  # Lightning's CLI: sepit.training.cli
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
        fail(DataError("sepit predict", "answers come from `sepit bench`, which journals, resumes and scores them",
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
        auto_cli(commands, args=bare_flags(leading_argument(argv, commands)), as_positional=False, description=DESCRIPTION)
    except (DataError, MetricError, RegistryError, OSError) as err:
        fail(err)


def train(argv: list[str]) -> None:
    """The LightningCLI subcommands (sepit.training.cli); bad data or paths end in one clear message."""
    from sepit.training.cli import run

    try:
        run(argv)
    except Exception as err:
        # jsonargparse wraps what a model's constructor raised; the user needs the DataError inside.
        cause = err
        while cause is not None and not isinstance(cause, (DataError, RegistryError)):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        fail(cause)


def fail(err: Exception) -> None:
    print(f"sepit: error: {err}", file=sys.stderr)
    raise SystemExit(1) from None


if __name__ == "__main__":
    main()
