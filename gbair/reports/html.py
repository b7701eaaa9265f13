"""A self-contained HTML page for reviewing flagged training examples: the score each was ranked by,
what the model makes of it, and (TracIn strategies) the proponents and opponents of V's errors.

One file, no network: inline CSS and vanilla JS, plots as data: URIs, the data as a JSON block that
the script reads. A Content-Security-Policy forbids every fetch, so the page works from file:// and
cannot leak anything. All text reaches the DOM through textContent, never innerHTML, so emails that
contain HTML show as text. The reviewer's relabel/remove/keep decisions persist in the browser's
storage (keyed by the report's title and training ids, so a reload or a rerun's page keeps them),
import from a saved file, and export as

    {"decisions": [{"id": "<train id>", "action": "relabel" | "remove" | "keep", "label": "<class>"}]}

(label only for relabel). `data` has this shape (indices "train" point into data["train"]; optional
keys in brackets; flagged examples show highest score first, the score being the one they were
ranked by, higher = more suspicious):

    {"title": str, "class_names": [str], "metrics": {"header": [str], "rows": [[str | number]]},
     "plots": {name: "data:image/png;base64,..."}, ["validation_label": "gold" | "given"],
     "train": {"ids": [str], "texts": [str], "labels": [int], "corrupted": [bool | None]},
     "iterations": [{"strategy": str, "iteration": int, ["score_name": str, "score_meaning": str],
                     "misclassified": [{"id", "text", "gold", "predicted", ["confidence": float],
                                        ["proponents": [{"train", "dot", "cosine"}], "opponents": [...]]}],
                     "flagged": [{"train": int, "score": float, ["rank": int],
                                  ["details": [[name, str | number]]]}],
                     "n_flagged_corrupted": int | None, "precision_so_far": float | None}]}
"""

import base64
import hashlib
import html
import json
import math
import os
from typing import Any

from gbair import files

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:75em}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.5em;border-bottom:1px solid #ccc}h3{font-size:1.05em}
table.metrics{border-collapse:collapse}table.metrics td,table.metrics th{border:1px solid #ccc;padding:2px 6px;text-align:right}
figure{display:inline-block;margin:.5em}figure img{max-width:36em}
details.misclassified{border:1px solid #ddd;margin:2px 0;padding:2px 6px}
summary.expand{cursor:pointer}summary .vid{font-weight:bold;margin-right:.5em}summary .cls{color:#666;margin-left:.5em}
.train{border-left:4px solid #bbb;margin:4px 0;padding:2px 8px;background:#fafafa}
pre{white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word}
.train pre,pre.val-text{max-height:10em;overflow:auto;margin:2px 0;font-size:12px}
summary .snippet{overflow-wrap:anywhere}p.meaning,p.legend{color:#444;font-size:13px;max-width:60em}
.meta{color:#444;font-size:12px}.meta span{margin-right:1em}
.train.decided-relabel{border-left-color:#d08000;background:#fff6e6}
.train.decided-remove{border-left-color:#c00;background:#fdeaea}
.train.decided-keep{border-left-color:#080;background:#eaf7ea}
button.on{font-weight:bold;outline:2px solid #333}
.pager{margin:4px 0}.pager span{margin:0 .5em}
#export-json{width:100%;height:8em;font-family:monospace}
#decision-count{margin-left:1em}.decision{margin-left:1em;font-weight:bold}#import-status{margin-left:1em}
"""

_JS = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("report-data").textContent);
const CLASSES = DATA.class_names || [];
const TRAIN = DATA.train || {ids: [], texts: [], labels: [], corrupted: []};
const PAGE = 50;
const ACTIONS = ["relabel", "remove", "keep"];
const decisions = new Map();  // train id -> {action, label}
// Decisions persist in the browser's storage under a key of this report's title and training ids.
const STORE = "gbair-decisions:" + hash(String(DATA.title) + "\n" + TRAIN.ids.join("\n"));

function hash(s) {  // FNV-1a, 32 bits
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return h.toString(16);
}

function el(tag, attrs, kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of [].concat(kids === undefined ? [] : kids)) {
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
function cls(i) { return i in CLASSES ? CLASSES[i] : String(i); }
function fmt(x) {
  if (typeof x !== "number" || !isFinite(x) || Number.isInteger(x)) return x === null ? "" : String(x);
  const a = Math.abs(x);
  return a !== 0 && (a >= 1e5 || a < 1e-3) ? x.toExponential(3) : x.toFixed(4);
}
function score(x) { return typeof x === "number" && isFinite(x) && Number.isInteger(x) ? x.toFixed(4) : fmt(x); }  // 2.0 arrives as 2
function shorten(s, n) { s = String(s).replace(/\s+/g, " ").trim(); return s.length > n ? s.slice(0, n) + "…" : s; }
function corrupted(i) { const c = (TRAIN.corrupted || [])[i]; return c === true ? "yes" : c === false ? "no" : "unknown"; }

// Shows decision `d` (or none) on one training item: colour, pressed button, note.
function paint(item, d) {
  item.classList.remove("decided-relabel", "decided-remove", "decided-keep");
  if (d) item.classList.add("decided-" + d.action);
  for (const b of item.querySelectorAll("button[data-action]")) b.classList.toggle("on", !!d && d.action === b.dataset.action);
  const sel = item.querySelector("select");
  if (sel && d && d.action === "relabel") sel.value = d.label;
  item.querySelector(".decision").textContent = d ? "decision: " + d.action + (d.label ? " → " + d.label : "") : "";
}
function count() { document.getElementById("decision-count").textContent = decisions.size + " decision(s)"; }
function mark(id) {
  for (const item of document.querySelectorAll(".train[data-train-id=\"" + CSS.escape(id) + "\"]")) paint(item, decisions.get(id));
  count();
}

function decide(id, action, label) {
  const d = decisions.get(id);
  if (d && d.action === action && d.label === label) decisions.delete(id);  // a second click undoes
  else decisions.set(id, action === "relabel" ? {action, label} : {action});
  mark(id);
  save();
}

function asList() {
  return [...decisions].map(([id, d]) => (d.action === "relabel" ? {id, action: d.action, label: d.label} : {id, action: d.action}));
}
function save() {
  try { localStorage.setItem(STORE, JSON.stringify({decisions: asList()})); } catch (e) { /* storage off: memory only */ }
}
// Replaces every decision by those of `obj` ({"decisions": [...]}, the exported format); returns how
// many it took, or throws naming the first bad entry (then nothing changes).
function load(obj) {
  if (!obj || !Array.isArray(obj.decisions)) throw new Error('expected {"decisions": [...]}');
  const known = new Set(TRAIN.ids.map(String)), next = new Map();
  obj.decisions.forEach((d, n) => {
    const where = "decisions[" + n + "]";
    if (!d || !known.has(String(d.id))) throw new Error(where + ": id " + JSON.stringify(d && d.id) + " is not in this report");
    if (!ACTIONS.includes(d.action)) throw new Error(where + ": action " + JSON.stringify(d.action));
    if (d.action === "relabel" && !CLASSES.includes(d.label)) throw new Error(where + ": label " + JSON.stringify(d.label));
    next.set(String(d.id), d.action === "relabel" ? {action: d.action, label: d.label} : {action: d.action});
  });
  const before = [...decisions.keys()];
  decisions.clear();
  for (const [id, d] of next) decisions.set(id, d);
  for (const id of new Set(before.concat([...next.keys()]))) mark(id);
  count();
  return next.size;
}
function restore() {
  let text = null;
  try { text = localStorage.getItem(STORE); } catch (e) { return; }
  if (!text) return;
  try { load(JSON.parse(text)); } catch (e) { status("stored decisions ignored: " + e.message); }
}
function status(text) { document.getElementById("import-status").textContent = text; }
function importFile(input) {
  const file = input.files && input.files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    try { status("imported " + load(JSON.parse(String(reader.result))) + " decision(s) from " + file.name); save(); }
    catch (e) { status(file.name + ": not imported (" + e.message + ")"); }
    input.value = "";
  };
  reader.readAsText(file);
}

// One training example: text, given label, corruption, [name, shown value] fields, the decision buttons.
function trainItem(i, fields) {
  const id = String(TRAIN.ids[i]);
  const given = TRAIN.labels[i];
  const meta = el("div", {class: "meta"}, [el("span", {}, "train " + id), el("span", {}, "label: " + cls(given))]);
  if (corrupted(i) !== "unknown") meta.appendChild(el("span", {}, "corrupted: " + corrupted(i)));  // no truth: not shown
  for (const [k, v] of fields) meta.appendChild(el("span", {}, k + ": " + v));
  const others = CLASSES.map((_, c) => c).filter((c) => c !== given);
  let select = null;
  if (CLASSES.length > 2) {
    select = el("select", {}, others.map((c) => el("option", {value: CLASSES[c]}, CLASSES[c])));
  }
  const target = () => (select ? select.value : cls(others.length ? others[0] : given));
  const buttons = el("div", {class: "actions"});
  for (const action of ACTIONS) {
    const b = el("button", {type: "button", "data-train-id": id, "data-action": action},
                 action === "relabel" && !select ? "relabel → " + target() : action);
    b.addEventListener("click", () => decide(id, action, action === "relabel" ? target() : undefined));
    buttons.appendChild(b);
    if (action === "relabel" && select) buttons.appendChild(select);
  }
  buttons.appendChild(el("span", {class: "decision"}));
  const item = el("div", {class: "train", "data-train-id": id}, [el("pre", {}, TRAIN.texts[i]), meta, buttons]);
  paint(item, decisions.get(id));  // the same example may have been decided on elsewhere
  return item;
}

function influenceList(title, rows) {
  return el("div", {class: title}, [el("h4", {}, title + " (" + rows.length + ")")].concat(
    rows.map((r) => trainItem(r.train, [["dot", score(r.dot)], ["cosine", score(r.cosine)]]))));
}

// A misclassified validation example: a collapsed row whose explanation is built on first open.
function misclassifiedRow(m) {
  const summary = el("summary", {class: "expand"}, [
    el("span", {class: "vid"}, m.id), el("span", {class: "snippet"}, shorten(m.text, 100)),
    el("span", {class: "cls"}, (DATA.validation_label || "gold") + " " + cls(m.gold) + ", predicted " + cls(m.predicted) +
       (typeof m.confidence === "number" ? " (" + fmt(m.confidence) + ")" : ""))]);
  const row = el("details", {class: "misclassified", "data-val-id": m.id}, summary);
  row.addEventListener("toggle", () => {
    if (!row.open || row.dataset.built) return;
    row.dataset.built = "1";
    row.append(el("pre", {class: "val-text"}, m.text),
               influenceList("proponents", m.proponents || []), influenceList("opponents", m.opponents || []));
  });
  return row;
}

// Shows `items` PAGE at a time, building only the visible page.
function paged(items, render) {
  const box = el("div", {class: "paged"});
  const list = el("div", {class: "page"});
  const info = el("span");
  const prev = el("button", {type: "button", class: "prev"}, "prev");
  const next = el("button", {type: "button", class: "next"}, "next");
  const pages = Math.max(1, Math.ceil(items.length / PAGE));
  let page = 0;
  function show() {
    list.replaceChildren(...items.slice(page * PAGE, (page + 1) * PAGE).map(render));
    info.textContent = "page " + (page + 1) + " of " + pages + " (" + items.length + " total)";
    prev.disabled = page === 0; next.disabled = page >= pages - 1;
  }
  prev.addEventListener("click", () => { page--; show(); });
  next.addEventListener("click", () => { page++; show(); });
  if (pages > 1) box.appendChild(el("div", {class: "pager"}, [prev, info, next]));
  box.appendChild(list);
  show();
  return box;
}

const LEGEND = "Expand an example for its proponents (the training examples of highest TracIn influence on it: " +
  "training on them lowered its loss under its " + (DATA.validation_label || "gold") + " label) and opponents " +
  "(the lowest, most negative: training on them raised that loss, pushing towards the wrong prediction; a " +
  "mislabelled training example shows up here). dot: sum over checkpoints of learning rate × gradient dot " +
  "product; cosine: the same with unit-length gradients (−1 to 1), so large-gradient examples do not dominate.";

// A flagged example's fields: its rank, the score it was ranked by, then what the run adds (details).
function flaggedItem(it, f) {
  const fields = [["rank", String(f.rank === undefined ? "" : f.rank)], [it.score_name || "score", score(f.score)]];
  for (const [k, v] of f.details || []) fields.push([k, typeof v === "number" ? fmt(v) : String(v)]);
  return trainItem(f.train, fields);
}
// Highest score first (the score each example was ranked by: higher = more suspicious), ties by rank.
function byScore(flagged) {
  return [...flagged].sort((a, b) => (b.score - a.score) || ((a.rank || 0) - (b.rank || 0)));
}

function iterationSection(it) {
  const sec = el("section", {class: "iteration", "data-strategy": it.strategy, "data-iteration": it.iteration},
                 el("h2", {}, it.strategy + " — iteration " + it.iteration));
  const mis = it.misclassified || [], flagged = byScore(it.flagged || []);
  sec.append(el("h3", {}, "Misclassified validation examples (" + mis.length + ")"));
  if (mis.some((m) => m.proponents)) sec.append(el("p", {class: "legend"}, LEGEND));
  sec.append(paged(mis, misclassifiedRow));
  let summary = "Flagged training examples (" + flagged.length + ")";
  if (it.n_flagged_corrupted !== null && it.n_flagged_corrupted !== undefined) summary += ", " + it.n_flagged_corrupted + " corrupted";
  if (it.precision_so_far !== null && it.precision_so_far !== undefined) summary += "; precision so far " + score(it.precision_so_far);
  sec.append(el("h3", {class: "flagged-summary"}, summary));
  if (it.score_meaning) sec.append(el("p", {class: "meaning"}, (it.score_name || "score") + ": " + it.score_meaning));
  sec.append(paged(flagged, (f) => flaggedItem(it, f)));
  return sec;
}

function metricsTable(m) {
  if (!m || !m.header || !m.header.length) return el("p", {}, "no metrics");
  return el("table", {class: "metrics"}, [el("tr", {}, m.header.map((h) => el("th", {}, h)))].concat(
    (m.rows || []).map((r) => el("tr", {}, r.map((v) => el("td", {}, fmt(v)))))));
}

function exportDecisions() {
  const text = JSON.stringify({decisions: asList()}, null, 2);
  document.getElementById("export-json").value = text;
  const a = document.getElementById("export-download");
  if (a.href) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([text], {type: "application/json"}));
  a.hidden = false;
}

function main() {
  document.getElementById("title").textContent = DATA.title || "G-BAIR report";
  document.getElementById("metrics").appendChild(metricsTable(DATA.metrics));
  const plots = document.getElementById("plots");
  for (const [name, src] of Object.entries(DATA.plots || {})) {
    if (String(src).startsWith("data:image/")) plots.appendChild(el("figure", {}, [el("img", {src, alt: name}), el("figcaption", {}, name)]));
  }
  restore();  // before the items are built, so each shows its stored decision
  const its = document.getElementById("iterations");
  for (const it of DATA.iterations || []) its.appendChild(iterationSection(it));
  document.getElementById("export").addEventListener("click", exportDecisions);
  const input = document.getElementById("import-file");
  input.addEventListener("change", () => importFile(input));
  count();
  document.body.dataset.rendered = "1";
}
main();
"""


def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays to Python, NaN/inf to None (JSON.parse rejects them)."""
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        obj = obj.tolist()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _embed_json(data: dict) -> str:
    """JSON safe inside <script>: `<` as \\u003c (no `</script>` breakout), `://` as `:\\/\\/` (no URL text)."""
    text = json.dumps(_plain(data), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace("://", ":\\/\\/")


def render_report(data: dict) -> str:
    """The whole review page as one HTML string (data shape in the module docstring)."""
    script_hash = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{script_hash}'; form-action 'none'; base-uri 'none'")
    title = html.escape(str(data.get("title") or "G-BAIR report"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        "<h1 id=\"title\"></h1>\n"
        "<noscript>This report needs JavaScript.</noscript>\n"
        "<h2>Metrics</h2>\n<div id=\"metrics\"></div>\n<div id=\"plots\"></div>\n"
        "<div id=\"iterations\"></div>\n"
        "<h2>Decisions</h2>\n<p><button type=\"button\" id=\"export\">Export decisions</button>"
        "<span id=\"decision-count\"></span> "
        "<label>Import decisions <input type=\"file\" id=\"import-file\" accept=\".json,application/json\"></label>"
        "<span id=\"import-status\"></span> "
        "<a id=\"export-download\" download=\"decisions.json\" hidden>download decisions.json</a></p>\n"
        "<textarea id=\"export-json\" readonly></textarea>\n"
        f"<script type=\"application/json\" id=\"report-data\">{_embed_json(data)}</script>\n"
        f"<script>{_JS}</script>\n</body>\n</html>\n"
    )


def write_report(path: os.PathLike, data: dict) -> None:
    """Writes the page atomically, so a browser reloading it never sees half a file."""
    files.write_text(path, render_report(data))
