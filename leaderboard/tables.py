"""The board as Markdown, CSV and LaTeX tables. All three print the same rounded numbers (2 decimals for
scores, 3 for p-values) from one set of formatters, so a number read in one matches the others;
leaderboard.json keeps full precision.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

METRIC_NAMES = {"rougeL": "ROUGE-L", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "meteor": "METEOR",
                "accuracy": "accuracy", "macro_f1": "macro F1", "bleu2": "BLEU-2", "bleu4": "BLEU-4",
                "corpus_bleu2": "corpus BLEU-2", "corpus_bleu4": "corpus BLEU-4"}
MISSING = "–"


def score(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def p_value(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}"


def params(value: int | None) -> str:
    """Parameter counts as a person reads them: 0, 586K, 1.10B."""
    if value is None:
        return MISSING
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return str(value)


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def profile_label(board: dict) -> str:
    profile = board["metric_profile"]
    return f"{profile.get('name')} v{profile.get('version')}"


@dataclass(frozen=True)
class Marks:
    """How one output format writes a score's marks: the best, a tie with the best, the CI, partial results."""

    best: str  # str.format with {text}
    tied: str  # appended
    ci: str  # str.format with {lo}, {hi}
    partial: str  # str.format with {n}, {N}


MARKDOWN = Marks("**{text}**", " ≈", " [{lo}, {hi}]", " *({n}/{N})")
LATEX = Marks(r"\textbf{{{text}}}", r"$^{\approx}$", r" {{\scriptsize[{lo}, {hi}]}}", r"$^{{*}}$")
HTML = Marks("{text}", " ≈", " <span class=ci>[{lo}, {hi}]</span>", " <span class=partial>*({n}/{N})</span>")


def marked(marks: Marks, value: float | None, best: bool, tied: bool | None,
           ci: list[float] | None = None, partial: tuple[int, int] | None = None) -> str:
    """One score with its marks, written the way `marks` says."""
    text = score(value)
    text = marks.best.format(text=text) if best else text + (marks.tied if tied else "")
    if ci:
        text += marks.ci.format(lo=score(ci[0]), hi=score(ci[1]))
    if partial:
        text += marks.partial.format(n=partial[0], N=partial[1])
    return text


def cell_marked(cell: dict, marks: Marks) -> str:
    """A task cell: its value, best / tie marks, CI, and (n/N) when the results are partial."""
    return marked(marks, cell["value"], cell["best"], cell["tied"], cell.get("ci"),
                  None if cell["complete"] else (cell["n"], cell["expected_n"]))


def cell_text(cell: dict | None) -> str:
    """'66.99 [64.51, 69.56]', with the marks: best in bold, ≈ tied with the best, * partial results."""
    return MISSING if cell is None else cell_marked(cell, MARKDOWN)


def average_text(row: dict) -> str:
    return marked(MARKDOWN, row["average"], row["average_best"], row["average_tied"])


def legend(board: dict) -> str:
    heads = sorted({f"{metric_name(t['metric'])} ({t['kind']})" for t in board["tasks"]})
    return (f"Metric profile {profile_label(board)}; scores on a 0-100 scale; headline metric per task: "
            f"{', '.join(heads)}; 95 % bootstrap CIs in brackets. Bold: best; ≈: not significantly different "
            f"from the best (paired bootstrap, p ≥ {board['alpha']}); *(n/N): partial results, unranked. "
            "The average and rank need complete results on every task.")


def markdown(board: dict) -> str:
    tasks = board["tasks"]
    header = ["Rank", "Model", "Modality", "Params (total / active)", "Profile", "Average"] + [
        f"{t['name']} ({metric_name(t['metric'])})" for t in tasks]
    lines = ["# Leaderboard", "", legend(board), "", _md_row(header), _md_row(["---"] * len(header))]
    for row in board["rows"]:
        lines.append(_md_row([str(row["rank"] or MISSING), row["model"], row["modality"] or MISSING,
                              f"{params(row['params_total'])} / {params(row['params_active'])}",
                              profile_label(board), average_text(row)]
                             + [cell_text(row["tasks"].get(t["name"])) for t in tasks]))
    if board["reference"]:
        lines += ["", f"## Paired significance against {board['reference']}", "",
                  "Difference (model minus reference) on the samples both answered, with its p-value.", "",
                  _md_row(["Model", "Average"] + [t["name"] for t in tasks]),
                  _md_row(["---"] * (len(tasks) + 2))]
        for row in board["rows"]:
            if row["vs_reference"] is not None:
                versus = row["vs_reference"]
                lines.append(_md_row([row["model"], _diff(versus["average"])]
                                     + [_diff(versus.get(t["name"])) for t in tasks]))
    for ablation in board.get("structure_ablations", []):
        lines += ["", f"## Structure: {ablation['model']} vs {ablation['ablated']} on the proteins with coordinates", "",
                  "Headline values on the test samples whose protein has coordinates (the rest cannot differ), "
                  "the paired difference with its 95 % CI and p-value.", "",
                  _md_row(["Task", "n", ablation["model"], ablation["ablated"], "Difference [95 % CI]", "p"]),
                  _md_row(["---"] * 6)]
        for name, t in ablation["tasks"].items():
            lines.append(_md_row([name, str(t["n"]), score(t["model"]), score(t["ablated"]),
                                  f"{t['diff']:+.2f} [{t['ci'][0]:+.2f}, {t['ci'][1]:+.2f}]", p_value(t["p_value"])]))
        if ablation["average"]:
            a = ablation["average"]
            lines.append(_md_row(["average", str(a["n_shared"]), MISSING, MISSING,
                                  f"{a['diff']:+.2f} [{a['ci'][0]:+.2f}, {a['ci'][1]:+.2f}]", p_value(a["p_value"])]))
    if board["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in board["notes"]]
    return "\n".join(lines) + "\n"


def _diff(comparison: dict | None) -> str:
    if comparison is None:
        return MISSING
    return f"{comparison['diff']:+.2f} (p={p_value(comparison['p_value'])})"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def csv_columns(board: dict) -> list[str]:
    columns = ["rank", "model", "modality", "params_total", "params_active", "metric_profile", "average",
               "average_p_vs_best"]
    for task in board["tasks"]:
        t = task["name"]
        columns += [t, f"{t}_ci_low", f"{t}_ci_high", f"{t}_n", f"{t}_p_vs_best"]
    return columns


def csv_rows(board: dict) -> list[dict[str, Any]]:
    out = []
    for row in board["rows"]:
        record = {"rank": row["rank"] or "", "model": row["model"], "modality": row["modality"] or "",
                  "params_total": blank(row["params_total"]), "params_active": blank(row["params_active"]),
                  "metric_profile": profile_label(board), "average": blank(row["average"], score),
                  "average_p_vs_best": blank(row["average_p_vs_best"], p_value)}
        for task in board["tasks"]:
            t, cell = task["name"], row["tasks"].get(task["name"])
            ci = (cell or {}).get("ci") or [None, None]
            record.update({t: blank(cell and cell["value"], score), f"{t}_ci_low": blank(ci[0], score),
                           f"{t}_ci_high": blank(ci[1], score), f"{t}_n": blank(cell and cell["n"]),
                           f"{t}_p_vs_best": blank(cell and cell["p_vs_best"], p_value)})
        out.append(record)
    return out


def to_csv(board: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(board), lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(board))
    return buffer.getvalue()


def blank(value: Any, formatter=str) -> str:
    return "" if value is None else formatter(value)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text)


def latex(board: dict) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); CIs as ± half-widths would hide asymmetry, so the
    interval is printed below each score in a smaller font."""
    tasks = board["tasks"]
    head = ["Rank", "Model", "Modality", "Params", "Avg."] + [
        latex_escape(f"{t['name']} ({metric_name(t['metric'])})") for t in tasks]
    comment = latex_escape(legend(board)).replace("≈", r"$\approx$").replace("≥", r"$\geq$")
    lines = [f"% {comment}",
             r"\begin{tabular}{rlllr" + "r" * len(tasks) + "}", r"\toprule", " & ".join(head) + r" \\",
             r"\midrule"]
    for row in board["rows"]:
        cells = [str(row["rank"] or "--"), latex_escape(row["model"]), latex_escape(row["modality"] or "--"),
                 latex_escape(params(row["params_total"])),
                 "--" if row["average"] is None else marked(LATEX, row["average"], row["average_best"],
                                                            row["average_tied"])]
        for task in tasks:
            cell = row["tasks"].get(task["name"])
            cells.append("--" if cell is None or cell["value"] is None else cell_marked(cell, LATEX))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
