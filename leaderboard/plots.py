"""Plots of the board (matplotlib, no display): per-task headline scores with 95 % CIs as one small panel of
horizontal bars per task, and a radar chart of the ranked models across tasks. Each is saved as PNG (embedded in
the page) and SVG.

Sizes are in inches at DPI. The page shows a PNG at its own pixel size when it fits the page's column, so a
figure no wider than MAX_WIDTH keeps its 9 pt names at 9 pt in a 1400 px browser window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepit_leaderboard.tables import metric_name

DPI = 110
FONT = 9  # points: model and task names, the smallest text a reader needs
MAX_WIDTH = 12.0  # inches: 1320 px at DPI, inside the page's column in a 1400 px window
PANEL_WIDTH = 2.5
BAR_PITCH = 0.24  # inches of panel height per model: a 9 pt name is 0.125 in tall
PANEL_HEAD = 0.95  # inches: a panel's two-line title and its x tick labels
CHAR_WIDTH = 0.075  # inches per character of a 9 pt name, roughly: room for the longest beside the first panel


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "sepit-bench"  # the same board gives the same SVG
    import matplotlib.pyplot as plt

    return plt


def _colour(i: int):
    """The same colour for a model in both charts (the radar's rows are the board's first rows, in order)."""
    from matplotlib import colormaps

    return colormaps["tab10"](i % 10)


def bar_chart(board: dict, folder: Path) -> dict[str, Path]:
    return _save(bar_figure(board), folder, "tasks")


def radar_chart(board: dict, folder: Path) -> dict[str, Path] | None:
    fig = radar_figure(board)
    return None if fig is None else _save(fig, folder, "radar")


def bar_figure(board: dict):
    """Small multiples, not grouped bars: with a dozen models on fifteen task columns grouped bars shrank to a
    strip of unreadable labels. Here a panel is one task, and the figure grows a line of panels per few tasks
    and a bar's height per model, so names keep their size however large the board."""
    plt = _pyplot()
    tasks, rows = board["tasks"], board["rows"]
    count = max(len(tasks), 1)
    names = max((len(r["model"]) for r in rows), default=0) * CHAR_WIDTH + 0.3
    columns = min(max(int((MAX_WIDTH - names) // PANEL_WIDTH), 1), count)
    lines = -(-count // columns)
    columns = -(-count // lines)  # 9 tasks in 3 lines of 3, not 4 + 4 + 1
    size = (names + columns * PANEL_WIDTH, 0.5 + lines * (PANEL_HEAD + BAR_PITCH * max(len(rows), 1)))
    fig, axes = plt.subplots(lines, columns, figsize=size, sharey=True, squeeze=False, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.1)  # keeps one panel's "100" off the next one's "0"
    for ax, task in zip(axes.flat, tasks):
        _task_panel(ax, task, rows)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    partial = any(not c["complete"] for r in rows for c in r["tasks"].values())
    fig.suptitle("Headline score per task (0-100), with 95 % bootstrap CIs"
                 + ("; hatched: partial results" if partial else ""), fontsize=FONT + 2)
    return fig


def _task_panel(ax, task: dict, rows: list[dict]) -> None:
    """One task: a bar per model in board order, top to bottom, with its CI; 'no result' where it has none."""
    ax.set_yticks(np.arange(len(rows)), [r["model"] for r in rows], fontsize=FONT)
    for i, row in enumerate(rows):
        cell = row["tasks"].get(task["name"]) or {}
        value, ci = cell.get("value"), cell.get("ci")
        if value is None:
            ax.text(2, i, "no result", va="center", fontsize=FONT - 1, color="0.45")
            continue
        error = None if not ci else [[max(value - ci[0], 0)], [max(ci[1] - value, 0)]]
        ax.barh(i, value, 0.72, xerr=error, color=_colour(i), hatch=None if cell["complete"] else "///",
                edgecolor="white" if cell["complete"] else "0.3", linewidth=0.5, capsize=2,
                error_kw={"elinewidth": 0.9, "ecolor": "0.2"})
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the board's first row on top
    ax.set_xlim(0, 100)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.tick_params(axis="x", labelsize=FONT - 1)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(f"{task['name']}\n{metric_name(task['metric'])}", fontsize=FONT + 1)


def radar_figure(board: dict):
    """Ranked models across tasks; None with fewer than three tasks, where a radar shows nothing a bar does not.
    The legend sits below the polar axes in room of its own, so it covers no task label."""
    tasks, rows = board["tasks"], [r for r in board["rows"] if r["rank"] is not None]
    if len(tasks) < 3 or not rows:
        return None
    plt = _pyplot()
    legend_columns = 3
    fig, ax = plt.subplots(figsize=(8.0, 7.2 + 0.22 * -(-len(rows) // legend_columns)),
                           subplot_kw={"projection": "polar"}, layout="constrained")
    ax.set_theta_offset(np.pi / 2)  # the first task on top, the others clockwise
    ax.set_theta_direction(-1)
    angles = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False)
    loop = np.append(angles, angles[0])
    for i, row in enumerate(rows):
        values = [row["tasks"][t["name"]]["value"] for t in tasks]
        ax.plot(loop, values + values[:1], linewidth=1.4, color=_colour(i), label=row["model"],
                linestyle=("-", "--", ":")[i // 10 % 3])  # ten colours: the line tells model 1 from model 11
        ax.fill(loop, values + values[:1], color=_colour(i), alpha=0.06)
    ax.set_xticks(angles, [t["name"] for t in tasks], fontsize=FONT)
    ax.tick_params(axis="x", pad=10)
    ax.set_ylim(0, 100)
    ax.set_yticks([25, 50, 75], ["25", "50", "75"], fontsize=FONT - 1, color="0.4")  # the rim is 100
    ax.set_rlabel_position(180 / len(tasks))  # between the first two spokes, off every task label
    ax.set_title("Ranked models across tasks (headline score, 0-100)", fontsize=FONT + 2, pad=16)
    fig.legend(loc="outside lower center", ncols=legend_columns, fontsize=FONT, frameon=False)
    return fig


def _save(fig, folder: Path, stem: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"png": folder / f"{stem}.png", "svg": folder / f"{stem}.svg"}
    fig.savefig(paths["png"], dpi=DPI, metadata={"Software": None})
    fig.savefig(paths["svg"], metadata={"Date": None})
    _pyplot().close(fig)
    return paths
