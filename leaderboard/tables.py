"""The board as Markdown, CSV and LaTeX tables. All three print the same rounded numbers (2 decimals for
scores, 3 for p-values) from one set of formatters, so a number read in one matches the others;
leaderboard.json keeps full precision.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from sepit_leaderboard.board import CONTROL

METRIC_NAMES = {"entity_f1": "entity F1", "go_hf1": "GO hF1", "location_accuracy": "location accuracy",
                "rougeL": "ROUGE-L", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "meteor": "METEOR",
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


def text_metric_text(cell: dict | None, marks: Marks = MARKDOWN) -> str:
    """The text metric shown beside a grounded headline: value and CI, never marked best (it does not rank)."""
    text = (cell or {}).get("text")
    return MISSING if not text or text["value"] is None else marked(marks, text["value"], False, None, text["ci"])


def control_gap(row: dict) -> dict | None:
    """The row's paired difference to the control (by default the question-only one) on the average, or None."""
    return (row.get("vs_control") or {}).get("average")


def control_text(row: dict) -> str:
    gap = control_gap(row)
    return MISSING if gap is None else f"{gap['diff']:+.2f} [{gap['ci'][0]:+.2f}, {gap['ci'][1]:+.2f}]"


def comparisons(board: dict) -> list[tuple[str, str, str]]:
    """(row key, title, what it shows) of each paired comparison the board holds: against the reference model,
    the question-only control, and each model's own option prior. The Markdown and the page print the same ones."""
    out = []
    if board["reference"]:
        out.append(("vs_reference", f"Paired significance against {board['reference']}",
                    "Difference (model minus reference) on the samples both answered, with its paired-bootstrap "
                    "p-value."))
    control = board.get("control")
    if control and control == CONTROL:
        out.append(("vs_control", f"Gap to the question-only control, {control}",
                    "Difference (model minus the control, which reads the question but not the protein) on the "
                    "samples both answered, with its paired-bootstrap p-value: what the model knows beyond what "
                    "the questions give away."))
    elif control:
        out.append(("vs_control", f"Gap to the control, {control}",
                    f"Difference (model minus {control}) on the samples both answered, with its paired-bootstrap "
                    "p-value."))
    if any(row.get("vs_prior") for row in board["rows"]):
        out.append(("vs_prior", "Gap to each model's option prior",
                    "Difference (model minus the same model choosing with the protein withheld: `sepit bench "
                    "--model option_prior`) on the samples both answered, with its paired-bootstrap p-value: what "
                    "the protein adds to the model's choice. The average is over the tasks the prior answers "
                    "(closed-set ones)."))
    return out


def comparison_label(row: dict, key: str) -> str:
    """A row's name in a comparison table; against its option prior, with the prior's name."""
    return f"{row['model']} vs {row['prior']}" if key == "vs_prior" else row["model"]


def columns(board: dict) -> list[tuple[dict, str]]:
    """(task, "headline" or "text") per task column: an open task with a grounded headline has ROUGE-L beside it."""
    out = []
    for task in board["tasks"]:
        out.append((task, "headline"))
        if task.get("text_metric"):
            out.append((task, "text"))
    return out


def column_title(task: dict, part: str) -> str:
    return f"{task['name']} ({metric_name(task['metric'] if part == 'headline' else task['text_metric'])})"


def legend(board: dict) -> str:
    heads = sorted({f"{metric_name(t['metric'])} ({t['kind']})" for t in board["tasks"]})
    control = board.get("control")
    return (f"Metric profile {profile_label(board)}; scores on a 0-100 scale; headline metric per task: "
            f"{', '.join(heads)}; 95 % bootstrap CIs in brackets. Entity F1 compares the GO terms, EC numbers and "
            "locations an answer names with its reference's (docs/evaluation.md); ROUGE-L beside it counts shared "
            "words and does not rank. Bold: best; ≈: not significantly different "
            f"from the best (paired bootstrap, p ≥ {board['alpha']}); *(n/N): partial results, unranked. "
            "The average and rank need complete results on every task; the biology average is the mean of the "
            "grounded headlines" + (f"; vs {control}: the paired difference of the average to "
                                    + ("the question-only control (protein unread)" if control == CONTROL
                                       else "that control") + ", with its 95 % CI" if control else "") + ".")


def markdown(board: dict) -> str:
    tasks = board["tasks"]
    header = ["Rank", "Model", "Modality", "Params (total / active)", "Profile", "Average", "Biology average"]
    if board.get("control"):
        header.append(f"vs {board['control']}")
    header += [column_title(task, part) for task, part in columns(board)]
    lines = ["# Leaderboard", "", legend(board), "", _md_row(header), _md_row(["---"] * len(header))]
    for row in board["rows"]:
        cells = [str(row["rank"] or MISSING), row["model"], row["modality"] or MISSING,
                 f"{params(row['params_total'])} / {params(row['params_active'])}",
                 profile_label(board), average_text(row), score(row.get("biology_average"))]
        if board.get("control"):
            cells.append(control_text(row))
        cells += [cell_text(row["tasks"].get(task["name"])) if part == "headline"
                  else text_metric_text(row["tasks"].get(task["name"])) for task, part in columns(board)]
        lines.append(_md_row(cells))
    for key, title, text in comparisons(board):
        lines += ["", f"## {title}", "", text, "", _md_row(["Model", "Average"] + [t["name"] for t in tasks]),
                  _md_row(["---"] * (len(tasks) + 2))]
        for row in board["rows"]:
            if row.get(key) is not None:
                versus = row[key]
                lines.append(_md_row([comparison_label(row, key), _diff(versus["average"])]
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
    if board.get("agreement"):
        lines += ["", "## Agreement of model-based scores with the grounded F1", "",
                  "Spearman's rank correlation over each task's samples, with its 95 % bootstrap CI: how far a "
                  "model-based score ranks answers as the grounded F1 does.", "",
                  _md_row(["Model", "Task", "Scores", "Spearman [95 % CI]", "n"]), _md_row(["---"] * 5)]
        for a in board["agreement"]:
            rho = MISSING if a["spearman"] is None else f"{a['spearman']:+.2f}"
            ci = "" if a["ci"] is None else f" [{a['ci'][0]:+.2f}, {a['ci'][1]:+.2f}]"
            lines.append(_md_row([a["model"], a["task"], a["pair"].replace("~", " vs "), rho + ci, str(a["n"])]))
    for judge in board.get("judge", []):
        lines += ["", f"## {judge['label']}", "",
                  "Ten times the mean grade (0-10) the judge gave by its rubric (docs/evaluation.md, \"LLM judge\"), "
                  "with its 95 % CI, and the share of answers it failed to grade (left out of the mean). Graded by a "
                  "model, not against the ontology: not part of any average or rank.", "",
                  _md_row(["Model"] + [f"{t} (judge score / failures %)" for t in judge["tasks"]]),
                  _md_row(["---"] * (len(judge["tasks"]) + 1))]
        for row in judge["rows"]:
            cells = [row["tasks"].get(t) for t in judge["tasks"]]
            lines.append(_md_row([row["model"]] + [MISSING if c is None else f"{marked(MARKDOWN, c['value'], False, None, c['ci'])}"
                                                   f" / {score(c['failure'])}" for c in cells]))
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
    names = ["rank", "model", "modality", "params_total", "params_active", "metric_profile", "average",
             "average_p_vs_best", "biology_average", "control_gap", "control_gap_p"]
    for task in board["tasks"]:
        t = task["name"]
        names += [t, f"{t}_ci_low", f"{t}_ci_high", f"{t}_n", f"{t}_p_vs_best"]
        if task.get("text_metric"):
            names += [f"{t}_{task['text_metric']}"]
    return names


def csv_rows(board: dict) -> list[dict[str, Any]]:
    out = []
    for row in board["rows"]:
        record = {"rank": row["rank"] or "", "model": row["model"], "modality": row["modality"] or "",
                  "params_total": blank(row["params_total"]), "params_active": blank(row["params_active"]),
                  "metric_profile": profile_label(board), "average": blank(row["average"], score),
                  "average_p_vs_best": blank(row["average_p_vs_best"], p_value),
                  "biology_average": blank(row.get("biology_average"), score),
                  "control_gap": blank(control_gap(row) and control_gap(row)["diff"], score),
                  "control_gap_p": blank(control_gap(row) and control_gap(row)["p_value"], p_value)}
        for task in board["tasks"]:
            t, cell = task["name"], row["tasks"].get(task["name"])
            ci = (cell or {}).get("ci") or [None, None]
            record.update({t: blank(cell and cell["value"], score), f"{t}_ci_low": blank(ci[0], score),
                           f"{t}_ci_high": blank(ci[1], score), f"{t}_n": blank(cell and cell["n"]),
                           f"{t}_p_vs_best": blank(cell and cell["p_vs_best"], p_value)})
            if task.get("text_metric"):
                record[f"{t}_{task['text_metric']}"] = blank(((cell or {}).get("text") or {}).get("value"), score)
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
    cols = columns(board)
    head = ["Rank", "Model", "Modality", "Params", "Avg.", "Bio."] + [
        latex_escape(column_title(task, part)) for task, part in cols]
    comment = latex_escape(legend(board)).replace("≈", r"$\approx$").replace("≥", r"$\geq$")
    lines = [f"% {comment}",
             r"\begin{tabular}{rlllrr" + "r" * len(cols) + "}", r"\toprule", " & ".join(head) + r" \\",
             r"\midrule"]
    for row in board["rows"]:
        cells = [str(row["rank"] or "--"), latex_escape(row["model"]), latex_escape(row["modality"] or "--"),
                 latex_escape(params(row["params_total"])),
                 "--" if row["average"] is None else marked(LATEX, row["average"], row["average_best"],
                                                            row["average_tied"]),
                 "--" if row.get("biology_average") is None else score(row["biology_average"])]
        for task, part in cols:
            cell = row["tasks"].get(task["name"])
            if part == "text":
                cells.append(text_metric_text(cell, LATEX).replace(MISSING, "--"))
            else:
                cells.append("--" if cell is None or cell["value"] is None else cell_marked(cell, LATEX))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
