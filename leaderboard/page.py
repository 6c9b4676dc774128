"""The board as one static HTML page: works from file:// with no server and no network (plots are embedded
as data: URIs, the script is inline). Tables are rendered here, so the page reads without JavaScript; the
script only sorts columns on a click and switches the slice view.
"""

from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path

from sepit_leaderboard.board import SLICES
from sepit_leaderboard.tables import HTML, MISSING, average_text, cell_marked, column_title, columns, comparisons, \
    comparison_label, control_gap, control_text, legend, p_value, params, profile_label, score, text_metric_text

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1600px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f4f4f4;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.text,th.text{text-align:left}.ci{color:#777;font-size:12px}.best{font-weight:bold}
.wide{overflow-x:auto}.partial{color:#a60}.hidden{display:none}p.legend{color:#444;max-width:1100px}img{max-width:100%}
"""

SCRIPT = """
function sortValue(td){const v=td.dataset.sort;return v===undefined||v===''?null:(isNaN(+v)?v:+v);}
function sortBy(th){
  const table=th.closest('table'),col=[...th.parentNode.children].indexOf(th);
  const ascending=th.getAttribute('aria-sort')?th.getAttribute('aria-sort')!=='ascending':th.dataset.first==='ascending';
  table.querySelectorAll('th').forEach(h=>h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort',ascending?'ascending':'descending');
  const body=table.tBodies[0],rows=[...body.rows];
  rows.sort((a,b)=>{const x=sortValue(a.cells[col]),y=sortValue(b.cells[col]);
    if(x===null||y===null)return (x===null)-(y===null);
    const c=x<y?-1:x>y?1:0;return ascending?c:-c;});
  rows.forEach(r=>body.appendChild(r));
}
document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>sortBy(th)));
function showSlice(){
  const kind=document.getElementById('slice-kind').value,task=document.getElementById('slice-task').value;
  document.querySelectorAll('table.slice').forEach(t=>t.classList.toggle('hidden',
    t.dataset.slice!==kind||t.dataset.task!==task));
}
['slice-kind','slice-task'].forEach(id=>{const e=document.getElementById(id);if(e)e.addEventListener('change',showSlice);});
// A browser restores the selects on Back after the scripts ran: show the table they name.
window.addEventListener('pageshow',()=>{if(document.getElementById('slice-kind'))showSlice();});
"""

SLICE_TITLES = {"identity": "identity to the training set (leakage report)", "structure": "with vs without structure",
                "length": "sequence length (residues)"}


def render(board: dict, plots: dict[str, dict[str, Path]], generated: str) -> str:
    parts = ["<h1>SEPIT-Bench leaderboard</h1>",
             f"<p class=legend>{escape(legend(board))}</p>",
             (f"<p class=legend>Built {escape(generated)} from {sum(len(r['sources']) for r in board['rows'])} "
              "results files. Click a column header to sort.</p>"),
             _board_table(board), _significance(board), _judges(board), _agreement(board), _slices(board),
             _plots(plots), _notes(board)]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>SEPIT-Bench leaderboard</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(p for p in parts if p)
            + f"\n<script>{SCRIPT}</script></body></html>\n")


def _th(text: str, kind: str = "number", first: str = "descending") -> str:
    css = " class=text" if kind == "text" else ""
    return f"<th{css} data-first={first}>{escape(text)}</th>"


def _td(text: str, sort: object = None, css: str = "") -> str:
    value = "" if sort is None else escape(str(sort))
    return f"<td class='{css}' data-sort='{value}'>{text}</td>"


def _score_td(cell: dict | None) -> str:
    if cell is None or cell["value"] is None:
        return _td(MISSING)
    css = ("best" if cell["best"] else "") + ("" if cell["complete"] else " partial")
    return _td(cell_marked(cell, HTML), cell["value"], css)


def _board_table(board: dict) -> str:
    head = [_th("Rank", first="ascending"), _th("Model", "text", "ascending"), _th("Modality", "text", "ascending"),
            _th("Params total"), _th("Params active"), _th("Profile", "text", "ascending"), _th("Average"),
            _th("Biology average")]
    if board.get("control"):
        head.append(_th(f"vs {board['control']}"))
    head += [_th(column_title(task, part)) for task, part in columns(board)]
    body = []
    for row in board["rows"]:
        average = escape(average_text(row).replace("**", ""))
        cells = [_td(str(row["rank"] or MISSING), row["rank"]), _td(escape(row["model"]), row["model"], "text"),
                 _td(escape(row["modality"] or MISSING), row["modality"], "text"),
                 _td(params(row["params_total"]), row["params_total"]),
                 _td(params(row["params_active"]), row["params_active"]),
                 _td(escape(profile_label(board)), profile_label(board), "text"),
                 _td(average, row["average"], "best" if row["average_best"] else ""),
                 _td(score(row.get("biology_average")), row.get("biology_average"))]
        if board.get("control"):
            gap = control_gap(row)
            cells.append(_td(escape(control_text(row)), gap and gap["diff"]))
        for task, part in columns(board):
            cell = row["tasks"].get(task["name"])
            if part == "headline":
                cells.append(_score_td(cell))
            else:
                text = (cell or {}).get("text") or {}
                cells.append(_td(text_metric_text(cell, HTML), text.get("value")))
        body.append(f"<tr data-model='{escape(row['model'])}'>" + "".join(cells) + "</tr>")
    return ("<div class=wide><table id=board class=sortable><thead><tr>" + "".join(head) + "</tr></thead><tbody>\n"
            + "\n".join(body) + "\n</tbody></table></div>")


def _significance(board: dict) -> str:
    """Paired differences to the reference model, the question-only control and each model's option prior, per
    task and on average."""
    parts = []
    for key, title, text in comparisons(board):
        table_id = {"vs_reference": "significance", "vs_control": "control", "vs_prior": "prior"}[key]
        head = [_th("Model", "text", "ascending"), _th("Average")] + [_th(t["name"]) for t in board["tasks"]]
        body = []
        for row in board["rows"]:
            versus = row.get(key)
            if versus is None:
                continue
            label = comparison_label(row, key)
            cells = [_td(escape(label), label, "text")]
            for name in ["average"] + [t["name"] for t in board["tasks"]]:
                c = versus.get(name)
                cells.append(_td(MISSING) if c is None else
                             _td(f"{c['diff']:+.2f} <span class=ci>p={p_value(c['p_value'])}, n={c['n_shared']}</span>",
                                 c["diff"]))
            body.append(f"<tr data-model='{escape(row['model'])}'>" + "".join(cells) + "</tr>")
        parts.append(f"<h2>{escape(title)}</h2><p class=legend>{escape(text)}</p><div class=wide><table id={table_id} "
                     "class=sortable><thead><tr>" + "".join(head) + "</tr></thead><tbody>" + "".join(body)
                     + "</tbody></table></div>")
    return "".join(parts)


def _judges(board: dict) -> str:
    """One table per LLM judge (model and rubric version): graded by a model, in no average or rank."""
    parts = []
    for judge in board.get("judge", []):
        head = [_th("Model", "text", "ascending")] + [_th(f"{t} (judge score)") for t in judge["tasks"]]
        body = []
        for row in judge["rows"]:
            cells = [_td(escape(row["model"]), row["model"], "text")]
            for task in judge["tasks"]:
                c = row["tasks"].get(task)
                cells.append(_td(MISSING) if c is None else _td(
                    f"{score(c['value'])} <span class=ci>failures {score(c['failure'])} %, n={c['n']}</span>", c["value"]))
            body.append(f"<tr data-model='{escape(row['model'])}'>" + "".join(cells) + "</tr>")
        parts.append(f"<h2>{escape(judge['label'])}</h2><p class=legend>Ten times the mean grade (0-10) the judge gave "
                     "by its rubric, answers it failed to grade left out. Graded by a model, not against the ontology: "
                     "not part of any average or rank.</p><div class=wide><table class=sortable><thead><tr>"
                     + "".join(head) + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")
    return "".join(parts)


def _agreement(board: dict) -> str:
    """Spearman agreement of each model-based score with the grounded F1, per model and task."""
    if not board.get("agreement"):
        return ""
    head = [_th("Model", "text", "ascending"), _th("Task", "text", "ascending"), _th("Scores", "text", "ascending"),
            _th("Spearman"), _th("n")]
    body = []
    for a in board["agreement"]:
        rho = MISSING if a["spearman"] is None else f"{a['spearman']:+.2f}"
        ci = "" if a["ci"] is None else f" <span class=ci>[{a['ci'][0]:+.2f}, {a['ci'][1]:+.2f}]</span>"
        pair = a["pair"].replace("~", " vs ")
        body.append(f"<tr data-model='{escape(a['model'])}'>" + _td(escape(a["model"]), a["model"], "text")
                    + _td(escape(a["task"]), a["task"], "text") + _td(escape(pair), pair, "text")
                    + _td(rho + ci, a["spearman"]) + _td(str(a["n"]), a["n"]) + "</tr>")
    return ("<h2>Agreement of model-based scores with the grounded F1</h2><p class=legend>Spearman's rank correlation "
            "over each task's samples, with its 95 % bootstrap CI: how far a model-based score ranks answers as the "
            "grounded F1 does.</p><div class=wide><table id=agreement class=sortable><thead><tr>" + "".join(head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")


def _slices(board: dict) -> str:
    tasks = [t["name"] for t in board["tasks"]]
    available = [kind for kind in SLICES if board["slices"].get(kind)]
    if not available or not tasks:
        return ""
    kinds = "".join(f"<option value={k}>{escape(SLICE_TITLES[k])}</option>" for k in available)
    options = "".join(f"<option value='{escape(t)}'>{escape(t)}</option>" for t in tasks)
    tables = []
    for kind in available:
        for task in tasks:
            hidden = "" if (kind, task) == (available[0], tasks[0]) else " hidden"
            head = [_th("Model", "text", "ascending")] + [_th(label) for label in SLICES[kind]]
            body = []
            for model in [r["model"] for r in board["rows"]]:  # board order
                bins = board["slices"][kind].get(model, {}).get(task)
                if not bins:
                    continue
                cells = [_td(escape(model), model, "text")]
                for label in SLICES[kind]:
                    b = bins.get(label, {"n": 0, "value": None})
                    cells.append(_td(f"{score(b['value'])} <span class=ci>n={b['n']}</span>", b["value"]))
                body.append(f"<tr data-model='{escape(model)}'>" + "".join(cells) + "</tr>")
            tables.append(f"<table class='slice sortable{hidden}' data-slice={kind} data-task='{escape(task)}'>"
                          "<thead><tr>" + "".join(head) + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
    return ("<h2>Slices</h2><p class=legend>The headline metric within each bin of the test samples.</p>"
            f"<label>Slice <select id=slice-kind>{kinds}</select></label> "
            f"<label>Task <select id=slice-task>{options}</select></label>" + "".join(tables))


def _plots(plots: dict[str, dict[str, Path]]) -> str:
    out = []
    for name, paths in plots.items():
        data = base64.b64encode(paths["png"].read_bytes()).decode("ascii")
        out.append(f"<figure><img alt='{escape(name)} chart' src='data:image/png;base64,{data}'>"
                   f"<figcaption><a href='plots/{escape(paths['svg'].name)}'>SVG</a></figcaption></figure>")
    return "<h2>Plots</h2>" + "".join(out) if out else ""


def _notes(board: dict) -> str:
    """Sources, and any note naming one, relative to the folder that holds them all: a published page must not
    show the folders of the machine that built it."""
    sources = sorted({s for row in board["rows"] for s in row["sources"]})
    # The deepest folder above every source: the results folder given to the builder, or a model's folder in it.
    root = os.path.join(os.path.commonpath([os.path.dirname(s) for s in sources]), "") if sources else ""
    shared = root.strip(os.sep)  # a root of "/" alone would strip every slash out of the notes' text
    items = [f"<li>{escape(n.replace(root, '') if shared else n)}</li>" for n in board["notes"]]
    items += [f"<li>source: {escape(s.removeprefix(root))}</li>" for s in sources]
    return "<h2>Notes</h2><ul>" + "".join(items) + "</ul>"
