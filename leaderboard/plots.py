"""Plots of the board (matplotlib, no display): per-task headline scores with 95 % CIs as grouped bars, and a
radar chart of the ranked models across tasks. Each is saved as PNG (embedded in the page) and SVG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepit_leaderboard.tables import metric_name


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "sepit-bench"  # the same board gives the same SVG
    import matplotlib.pyplot as plt

    return plt


def bar_chart(board: dict, folder: Path) -> dict[str, Path]:
    plt = _pyplot()
    tasks, rows = board["tasks"], board["rows"]
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(tasks) + 0.25 * len(tasks) * len(rows)), 4.2))
    x = np.arange(len(tasks))
    for i, row in enumerate(rows):
        values, low, high = [], [], []
        for task in tasks:
            cell = row["tasks"].get(task["name"]) or {}
            value, ci = cell.get("value"), cell.get("ci")
            values.append(np.nan if value is None else value)
            low.append(0 if value is None or not ci else max(value - ci[0], 0))
            high.append(0 if value is None or not ci else max(ci[1] - value, 0))
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, yerr=[low, high], capsize=2,
               label=row["model"], error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, [f"{t['name']}\n({metric_name(t['metric'])})" for t in tasks], rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylabel("score (0-100)")
    ax.set_ylim(0, 100)
    ax.set_title("Headline score per task, with 95 % bootstrap CIs")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(plt, fig, folder, "tasks")


def radar_chart(board: dict, folder: Path) -> dict[str, Path] | None:
    """Ranked models across tasks; None with fewer than three tasks, where a radar shows nothing a bar does not."""
    tasks, rows = board["tasks"], [r for r in board["rows"] if r["rank"] is not None]
    if len(tasks) < 3 or not rows:
        return None
    plt = _pyplot()
    angles = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False)
    fig, ax = plt.subplots(figsize=(6.4, 6.4), subplot_kw={"projection": "polar"})
    for row in rows:
        values = [row["tasks"][t["name"]]["value"] for t in tasks]
        ax.plot(np.append(angles, angles[0]), values + values[:1], linewidth=1.2, label=row["model"])
        ax.fill(np.append(angles, angles[0]), values + values[:1], alpha=0.08)
    ax.set_xticks(angles, [t["name"] for t in tasks], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title("Ranked models across tasks (headline score, 0-100)", pad=18)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.3, 1.1))
    fig.tight_layout()
    return _save(plt, fig, folder, "radar")


def _save(plt, fig, folder: Path, stem: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"png": folder / f"{stem}.png", "svg": folder / f"{stem}.svg"}
    fig.savefig(paths["png"], dpi=110, metadata={"Software": None})
    fig.savefig(paths["svg"], metadata={"Date": None})
    plt.close(fig)
    return paths
