"""What every benchmark script here shares: a plain-text table, a record of the machine it ran on, child
processes run and timed the same way, and the optional JSON file of the numbers (for BENCHMARKS.md).

The scripts run as `python bench/<name>.py` (sys.path[0] is bench/), and some of their code is also imported
by child processes as `bench.<name>`, so each script puts the repository root on sys.path first.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text columns; floats with 4 significant digits (enough for a speed ratio)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def machine() -> dict[str, Any]:
    """Enough to tell two timings apart: CPU count, load average (other jobs skew CPU timings), versions. Torch
    threads are per run, so each script reports its own."""
    import torch

    record = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
              "load_average_1min": round(os.getloadavg()[0], 2), "platform": platform.platform(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name()
    return record


def describe(record: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in record.items())


def run(command: Sequence[str], what: str, **kwargs: Any) -> tuple[subprocess.CompletedProcess, float]:
    """Run a child process quietly; (its result, wall seconds). On failure, stop with the end of its stderr:
    a benchmark that half-ran has no numbers worth printing."""
    start = time.perf_counter()
    done = subprocess.run(list(command), capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return done, seconds


def save_json(path: str | Path | None, document: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {path}")
