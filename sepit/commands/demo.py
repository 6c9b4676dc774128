"""`sepit demo`: the main job, end to end on the bundled SP14 data and tiny models, on a CPU.

It checks and prints the benchmark card. It trains SEPIT stages 0 -> 1 -> 2 and the trainable baselines
with the shipped tiny configs. It evaluates SEPIT, SEPIT without structure (the same weights, coordinates
withheld), every baseline and the training-free ones (retrieval, majority, question majority) on all SP14 test
tasks, then builds the leaderboard.

Each step runs the public command a user would run (`sepit fit`, `sepit bench`) in a child process, inside
the output folder, so that the configs' relative `runs/tiny/...` paths land there. A step that finished
leaves a marker holding the hash of its command; a re-run skips it. An interrupted fit resumes from its
last checkpoint; an interrupted bench resumes from its saved rows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sepit.configs import shipped_root
from sepit.data.errors import DataError

FITS = (("sepit-stage0", "configs/sepit/tiny/stage0.yaml", "runs/tiny/stage0"),
        ("sepit-stage1", "configs/sepit/tiny/stage1.yaml", "runs/tiny/stage1"),
        ("sepit-stage2", "configs/sepit/tiny/stage2.yaml", "runs/tiny/stage2"),
        ("text_llm", "configs/baselines/tiny/text_llm.yaml", "runs/tiny/text_llm"),
        ("text_llm_lora", "configs/baselines/tiny/text_llm_lora.yaml", "runs/tiny/text_llm_lora"),
        ("plm_projector", "configs/baselines/tiny/plm_projector.yaml", "runs/tiny/plm_projector"),
        ("qformer", "configs/baselines/tiny/qformer.yaml", "runs/tiny/qformer"))


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]  # arguments of `sepit`
    marker: str  # relative to the output folder

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.argv).encode()).hexdigest()[:16]


def steps(tasks: str, batch_size: int, max_new_tokens: int, limit: int | None) -> list[Step]:
    out = [Step("benchmark card", ("data", "info"), "card.done"),
           Step("pretrained tiny parts", ("pretrain",), "pretrain.done")]
    for name, config, folder in FITS:
        # The shipped copy (the clone's configs/ in an editable install), wherever the demo runs.
        shipped = shipped_root() / config.removeprefix("configs/")
        out.append(Step(f"fit {name}", ("fit", "--config", str(shipped), "--ckpt_path", "last"),
                        f"{folder}/fit.done"))
    stage2 = f"{FITS[2][2]}/checkpoints/last.ckpt"
    models = [("sepit", (stage2,)),
              ("sepit-no-structure", ("sepit", "--model_args", json.dumps(
                  {"checkpoint": stage2, "name": "sepit-no-structure", "sequence_only": True}))),
              *[(name, (f"{folder}/checkpoints/last.ckpt",)) for name, _, folder in FITS[3:]],
              ("retrieval", ("retrieval",)), ("majority", ("majority",)),
              ("question_majority", ("question_majority",))]
    for name, model in models:
        argv = ("bench", "--model", *model, "--tasks", tasks, "--output", f"bench/{name}",
                "--batch_size", str(batch_size), "--generation.max_new_tokens", str(max_new_tokens))
        out.append(Step(f"bench {name}", argv + (("--limit", str(limit)) if limit else ()), f"bench/{name}/bench.done"))
    return out


def demo(output: Path = Path("runs/demo"), fresh: bool = False, tasks: str = "sp14", batch_size: int = 32,
         max_new_tokens: int = 256, limit: int | None = None) -> None:
    """Train tiny SEPIT and the baselines, evaluate them all on SP14, and print the leaderboard.

    Args:
        output: the folder for every checkpoint, prediction, result and the board; re-running resumes there.
        fresh: delete the output folder first and start over.
        tasks: the tasks to evaluate on (a suite, task names, or a task file).
        batch_size: rows decoded together when evaluating.
        max_new_tokens: the longest answer generated: 256 holds the SP14 answers (99 % of the training answers
            are at most 258 tokens; at 32, nine in ten caption, function and process answers were cut short,
            while the training-free baselines answer in full).
        limit: evaluate only the first N samples of each task (a smoke run; the board then ranks nobody).
    """
    output = Path(output).resolve()
    if fresh and output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    plan = steps(tasks, batch_size, max_new_tokens, limit)
    timings = []
    clock = time.perf_counter()
    for number, step in enumerate(plan, 1):
        marker = output / step.marker
        if marker.is_file() and marker.read_text().strip() == step.key():
            print(f"[{number}/{len(plan)}] {step.name}: done before, skipped", flush=True)
            timings.append((step.name, "skipped", 0.0))
            continue
        print(f"[{number}/{len(plan)}] {step.name}: sepit {' '.join(step.argv)}", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sepit.cli", *step.argv], cwd=output)
        if done.returncode != 0:
            raise DataError(f"step {step.name!r}", f"`sepit {' '.join(step.argv)}` failed (exit {done.returncode}) in "
                            f"{output}", "Its output is above. Fix the cause and run the demo again: finished steps "
                            "are kept, or pass --fresh true to start over.")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(step.key() + "\n")
        timings.append((step.name, "ran", time.perf_counter() - start))
    print("\n" + training_card(output))
    board = _build_board(output)
    print("\nstep timings (s): " + "; ".join(f"{name} {status}" + (f" {s:.0f}" if status == "ran" else "")
                                            for name, status, s in timings))
    print(f"demo finished in {time.perf_counter() - clock:.0f} s; the board: {board / 'index.html'}")


def training_card(output: Path) -> str:
    """Per trained model: parameters, the steps and items it trained on, its training wall time (over resumes),
    and where its pretrained parts came from; read from the checkpoints' own records."""
    import torch

    from sepit.tiny.pretrained import pretraining_record
    from sepit.model_paths import PRETRAINED_SCHEME, resolve_model_path

    lines = ["| model | parameters | steps | items seen | training wall time | starts from |", "|---|---|---|---|---|---|"]
    for name, _, folder in FITS:
        path = output / folder / "checkpoints" / "last.ckpt"
        if not path.is_file():
            continue
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        storages = {t.untyped_storage().data_ptr(): t.numel() for k, t in data["state_dict"].items()
                    if t.is_floating_point() and not k.endswith("inv_freq")}
        trained = data["sepit"].get("training", {})
        parts = []
        for role, spec in trained.get("parts", {}).items():
            if spec.startswith(PRETRAINED_SCHEME):
                made = pretraining_record(resolve_model_path(spec)) or {}
                spec += (f" ({made.get('steps')} steps on {made.get('corpus')}, {made.get('seconds')} s; "
                         f"configs/pretrain/tiny.yaml)")
            parts.append(f"{role}: {spec}")
        lines.append(f"| {name} | {sum(storages.values()):,} | {trained.get('steps', '?')} | "
                     f"{trained.get('items', '?')} | {trained.get('seconds', '?')} s | {'; '.join(parts)} |")
    return "\n".join(lines)


def _build_board(output: Path) -> Path:
    """The leaderboard, through its registered command (sepit does not import the leaderboard package)."""
    from sepit.registry import COMMANDS

    board = output / "board"
    # SEPIT vs its own weights with the coordinates withheld, on the proteins that have coordinates.
    COMMANDS.get("leaderboard")["build"](str(output / "bench"), board,
                                         structure_pairs=["sepit:sepit-no-structure"])
    return board
