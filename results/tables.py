"""`mae-bench tables`: the paper's tables from result files, measured rows beside the reference rows.

Tables (each as Markdown, CSV and LaTeX):
- `in1k`: ImageNet top-1 by protocol (linear / partial K / fine-tune) x init, a column per arch (paper Table 3 layout);
- `fig9_partial`: partial fine-tuning, top-1 by blocks tuned (paper Figure 9; also a PNG);
- one table per other task, named by its `table`, its metrics by init and arch: `knn` (weighted k-NN top-1 / top-5,
  DINO's eval_knn; not in the MAE paper, measured rows only), `coco` (APbox and APmask, paper Table 4 layout),
  `ade20k` (mIoU, paper Table 5 layout);
- `table1_<knob>` (paper Table 1 a-f), `fig5_mask_ratio` and `fig7_pretrain_epochs` (paper Figures 5 and 7, PNGs
  too): the paper's ablation rows, beside MAE runs that carry `init.pretrain` and vary that knob;
- `table2_wallclock`: the paper's Table 2 (reference rows; `mae-bench bench pretrain` measures ours).
A measured cell is the mean ± std (n=runs) over the runs of one setting; its provenance (result files, checkpoint
sha256, dataset, split, subset) is in the CSV and, per row id, under the Markdown table. The `data` column says what
was measured (dataset/split · images · full set or subset N, and the dataset root where runs of one label differ in
it), so subset numbers never pass for paper-scale ones and runs of different data are never pooled.
A measured row of another method's checkpoint is named by its method and size (`DINOv2 ViT-S/14`) and stands right
after the paper's reference rows of that method (`beside_reference`).
Pure pandas + matplotlib (Agg); no torch.
"""
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .frame import PAPER_DEFAULTS, PRETRAIN_AXES, arch_label, load_frame, runs_table
from .record import ResultError
from .reference import REFERENCE_CSV, UNVERIFIED_MARK, is_unverified, load_reference
from .render import latex_table, markdown_cell, markdown_table, write_text_atomic

PROTOCOL_ORDER = {"linear": 0, "partial": 1, "finetune": 2}
INIT_ORDER = {"scratch": 0, "supervised": 1, "mae": 3}  # the paper lists baselines first, other methods, MAE last
INIT_LABEL = {"mae": "MAE", "supervised": "supervised", "scratch": "scratch"}
METRIC_LABEL = {"top1": "top-1", "top5": "top-5", "bbox_AP": "APbox", "segm_AP": "APmask", "mIoU": "mIoU"}
METRIC_UNIT = {"speedup": "×", "flops": "×"}  # reference numbers that are ratios
PROTOCOL_TABLE = "in1k"  # the table of the tasks whose `table` is this: rows protocol x init (paper Table 3 layout)
PAPER_IMAGENET = "ImageNet-1K"  # the data of the paper's figures and ablation tables (Figures 5, 7, 9, Tables 1, 2)
AXIS_LABEL = {"mask_ratio": "mask ratio", "mask_strategy": "mask sampling", "decoder_depth": "decoder depth",
              "decoder_embed_dim": "decoder width", "norm_pix_loss": "norm-pix target",
              "mask_tokens_in_encoder": "mask tokens in encoder", "augment": "augmentation",
              "pretrain_epochs": "pretraining epochs"}
# with `tables --ci`: the interval of a seed group's mean; with `--baseline`: the paired difference to that row
OPTIONAL_FIELDS = ["ci_low", "ci_high", "diff", "diff_low", "diff_high", "versus"]
CELL_FIELDS = ["column", "metric", "arch", "value", "std", "n", "kind", "verified", "files", "sha256", "dataset",
               "split", "subset", "notes"]
LEGEND = ("Measured rows (source `measured`) are means over runs of one setting: `mean ± std (n=runs)`; their data "
          "column is dataset/split · images evaluated · full set or subset N, so small-subset or synthetic numbers "
          "are not paper-scale ones. Reference rows are the paper's numbers (results/reference/mae_reference.csv; "
          f"each cell's source is in the CSV's `verified` column); {UNVERIFIED_MARK} = no checked source (recalled, "
          "not yet verified against the paper).")


@dataclass
class Table:
    """One output table: long cells (one row per cell, provenance kept) and the row-label columns."""
    name: str
    title: str
    index: list[str]
    cells: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def grid(self, decimals: int = 1) -> tuple[list[str], list[list[str]]]:
        """Header and rows of strings: row labels, one column per `column` label, then the provenance id."""
        cells = self.cells.sort_values(["col_sort"], kind="stable")
        columns = list(dict.fromkeys(cells["column"]))
        keyed = {}
        for _, c in self.cells.iterrows():
            key = tuple(c[k] for k in self.index)
            row = keyed.setdefault(key, {"sort": c["row_sort"], "id": c["id"], "cells": {}})
            row["sort"] = min(row["sort"], c["row_sort"])
            row["cells"][c["column"]] = format_cell(c, decimals)
        rows = [[*key, *(r["cells"].get(col, "-") for col in columns), r["id"]]
                for key, r in sorted(keyed.items(), key=lambda kv: kv[1]["sort"])]
        return [*self.index, *columns, "id"], rows

    def markdown(self, decimals: int = 1, legend: bool = True) -> str:
        """Title, pipe table, the provenance of each measured cell, notes (and the legend)."""
        header, rows = self.grid(decimals)
        parts = [f"## {self.title}", "", markdown_table(header, rows)]
        prov = provenance_lines(self.cells)
        if prov:
            parts += ["", "Provenance of the measured cells (files relative to the results folder):", "", *prov]
        notes = [*self.notes, *([LEGEND] if legend else [])]
        parts += ["", *notes] if notes else []
        return "\n".join(parts) + "\n"

    def latex(self, decimals: int = 1) -> str:
        header, rows = self.grid(decimals)
        return latex_table(header, rows, caption=self.title, label=f"tab:{self.name}", n_left=len(self.index))

    def csv(self) -> str:
        cols = [*self.index, *CELL_FIELDS, *(c for c in OPTIONAL_FIELDS if c in self.cells), "id"]
        ordered = self.cells.sort_values(["row_sort", "col_sort"], kind="stable")[cols]
        for col in ("value", "std", *(c for c in OPTIONAL_FIELDS if c in self.cells and c != "versus")):  # 6 decimals: the mean and std of percentages, without float noise
            ordered[col] = [None if _missing(v) else round(float(v), 6) for v in ordered[col]]
        return ordered.to_csv(index=False, lineterminator="\n")


def format_cell(c, decimals: int = 1) -> str:
    """Reference: the number as written in the reference file (+ † when unverified). Measured: the mean, and
    `± std (n=k)` when there are k > 1 runs."""
    unit = METRIC_UNIT.get(c["metric"], "")
    if c["kind"] == "reference":
        return c["value_text"] + unit + (UNVERIFIED_MARK if is_unverified(c["verified"]) else "")
    text = f"{c['value']:.{decimals}f}{unit}"
    text += f" ± {c['std']:.{decimals}f} (n={int(c['n'])})" if c["n"] > 1 else ""
    if not _missing(c.get("ci_low")):
        text += f" [{c['ci_low']:.{decimals}f}, {c['ci_high']:.{decimals}f}]"
    if c.get("versus"):
        text += " " + c["versus"]
    return text


def provenance_lines(cells: pd.DataFrame) -> list[str]:
    """`- m1 · ViT-Ti/16 top-1: 2 runs: a/result.json, b/result.json; ckpt sha256 0123456789ab; data` per cell."""
    measured = cells[cells["kind"] == "measured"].sort_values(["row_sort", "col_sort"], kind="stable")
    lines = []
    for _, c in measured.iterrows():
        files = c["files"].split("; ")
        shas = ", ".join(s[:12] for s in c["sha256"].split("; ") if s) or "none"
        runs = f"{len(files)} run{'s' if len(files) > 1 else ''}"
        lines.append("- " + markdown_cell(f"{c['id']} · {c['column']}: {runs}: {', '.join(files)}; ckpt sha256 {shas}; "
                                          f"{c['data']}"))
    return lines


# ---- labels and sort keys ---------------------------------------------------------------
def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def protocol_label(protocol: str, blocks=None, part=None) -> str:
    if protocol == "partial" and not _missing(blocks):
        return f"partial K={int(blocks)}" + (" (MLP)" if part == "mlp" else "")
    return {"linear": "linear probe", "finetune": "fine-tune"}.get(protocol, str(protocol))


def _protocol_sort(protocol, blocks=None, part=None) -> tuple:
    return (PROTOCOL_ORDER.get(protocol, 3), -1 if _missing(blocks) else int(blocks), part == "mlp", str(protocol))


def _init_rank(init) -> int:
    return INIT_ORDER.get(init, 2)


def _arch_sort(arch: str) -> tuple:
    m = re.fullmatch(r"vit_(tiny|small|base|large|huge)_patch(\d+)", str(arch))
    sizes = ["tiny", "small", "base", "large", "huge"]
    return (sizes.index(m.group(1)), int(m.group(2)), "") if m else (9, 0, str(arch))


def _value_text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) >= 1 else str(value)
    return str(value)


def variant_axes(frame: pd.DataFrame) -> list[str]:
    """Pretraining knobs that differ between the MAE runs loaded: they become part of the MAE row label."""
    mae = frame[frame["init"] == "mae"]
    return [a for a in PRETRAIN_AXES if mae[a].dropna().map(repr).nunique() > 1]


def method_label(row, axes: list[str]) -> str:
    """MAE, supervised and scratch as the paper names them (MAE with the pretraining knobs that vary); another
    method's checkpoint by its method and size from its format (`DINOv2 ViT-S/14`, `MoCo v3 ViT-B/16`; a size outside
    the paper's by its arch name); `(<rule> features)` after it when the probe read the method's own features
    (model.features=method), so such runs are never pooled with the paper-protocol ones."""
    init = row["init"]
    label = INIT_LABEL.get(init) or f"{row.get('init_method') or init} {arch_label(row['arch'])}"
    if init == "mae" and axes:
        label += " (" + ", ".join(f"{AXIS_LABEL[a]} {'?' if _missing(row[a]) else _value_text(row[a])}"
                                  for a in axes) + ")"
    features = row.get("features")
    if isinstance(features, str) and features.startswith("method:"):
        label += f" ({features[len('method:'):]} features)"
    return label


def _family(pretrain: str, method: str) -> bool:
    """A reference row of `method`: its pretrain names it as a word (`DINO IN1K` for DINO, not for DINOv2)."""
    return isinstance(pretrain, str) and isinstance(method, str) and (pretrain == method
                                                                        or pretrain.startswith(method + " "))


def beside_reference(measured: pd.DataFrame, reference: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Measured rows of another method's checkpoint (not MAE, supervised, scratch) sorted right after the last
    reference row of that method in the same group (protocol, or model in Figure 9): a measured `MoCo v3 ViT-B/16`
    stands beside the paper's `MoCo v3 IN1K` rows. Rows of a method the reference lacks keep their place."""
    if measured.empty or reference.empty or "pretrain" not in reference:
        return measured
    groups = [c for c in index if c not in ("method", "source", "data")]
    measured = measured.copy()
    for i, row in measured.iterrows():
        if row["init"] in INIT_LABEL:
            continue
        mine = reference[[_family(p, row.get("init_method")) for p in reference["pretrain"]]]
        for col in groups:
            mine = mine[mine[col] == row[col]]
        if not mine.empty:
            measured.at[i, "row_sort"] = (*max(mine["row_sort"]), 1, row["row_sort"])
    return measured


# ---- cells ------------------------------------------------------------------------------
def aggregate(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, sample std (ddof 1; NaN for one run), run count and the joined provenance per group of `keys`."""
    def joined(values):
        return "; ".join(sorted({str(v) for v in values if v is not None and not pd.isna(v)}))

    groups = frame.groupby(keys, dropna=False, sort=False)
    out = groups.agg(value=("value", "mean"), std=("value", "std"), n=("value", "size"), files=("file", joined),
                     sha256=("sha256", joined), dataset=("dataset", "first"), split=("split", "first"),
                     subset=("subset", "first"), row_sort=("row_sort", "min"), col_sort=("col_sort", "min"))
    return out.reset_index()


def measured_cells(frame: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Aggregate prepared measured rows (label columns already set) into cells."""
    if frame.empty:
        return pd.DataFrame()
    keys = list(dict.fromkeys([*index, "column", "metric", "arch", "data"]))
    cells = aggregate(frame, keys)
    return cells.assign(kind="measured", verified="measured", notes="", value_text="")


def _assign_ids(cells: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Measured rows get ids m1, m2, ... in table order; reference rows none."""
    cells = cells.copy()
    cells["id"] = ""
    measured = cells[cells["kind"] == "measured"]
    order = measured.groupby(index, dropna=False, sort=False)["row_sort"].min().sort_values(kind="stable")
    ids = {key if isinstance(key, tuple) else (key,): f"m{i + 1}" for i, key in enumerate(order.index)}
    for i, c in measured.iterrows():
        cells.at[i, "id"] = ids[tuple(c[k] for k in index)]
    return cells


def _finish(name, title, index, parts, notes=()) -> Table | None:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return None
    cells = pd.concat(parts, ignore_index=True)
    for col in ("std", "n", "subset"):
        cells[col] = cells[col].astype(object) if col in cells else None
    return Table(name, title, list(index), _assign_ids(cells, list(index)), list(notes))


def _reference_cells(ref: pd.DataFrame, eval_data: str) -> pd.DataFrame:
    """Reference rows with the same label columns as measured cells."""
    if ref.empty:
        return pd.DataFrame()
    method = [p if not s else f"{p} ({s})" for p, s in zip(ref["pretrain"], ref["setting"])]
    out = ref.assign(
        method=method, kind="reference", std=None, n=None, sha256="", subset=None,
        source=ref["source"] + ", " + ref["table"] + ref["variant"].map(lambda v: f", {v}" if v else ""),
        data=f"{eval_data} · paper scale", dataset=eval_data, split="val", value_text=ref["value_text"],
        files=ref["file"].map(lambda f: Path(f).name) + ":" + ref["row"].astype(str))
    return out


def _prepare(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Measured rows with the label and sort columns every table uses."""
    f = frame.copy()
    f["source"] = "measured"
    f["method"] = [method_label(r, axes) for _, r in f.iterrows()]
    return f


def _with_reference(ref: pd.DataFrame | None, tasks, metrics) -> pd.DataFrame:
    """Reference rows of the main tables: the given tasks and metrics, not the rows of an ablation table."""
    if ref is None or ref.empty:
        return pd.DataFrame()
    own = ref["table"].isin(SETTING_TABLES)
    return ref[ref["task"].isin(tasks) & ref["metric"].isin(metrics) & ~own].copy()


def _reference_of(ref: pd.DataFrame | None, table_id: str) -> pd.DataFrame:
    """The reference rows whose `table` is `table_id` (an ablation table or figure of the paper)."""
    if ref is None or ref.empty:
        return pd.DataFrame()
    return ref[ref["table"] == table_id].copy()


def _table(name, title, index, measured, ref, eval_data, labels) -> Table | None:
    """Reference rows (from the reference frame) and measured cells (aggregated runs) of one table;
    `labels(rows, kind)` adds the row-label, `column`, `col_sort` and `row_sort` columns (kind 0 = reference)."""
    parts = []
    reference = labels(_reference_cells(ref, eval_data), 0) if not ref.empty else pd.DataFrame()
    if not ref.empty:
        parts.append(reference)
    if not measured.empty:
        parts.append(measured_cells(beside_reference(labels(measured, 1), reference, index), index))
    return _finish(name, title, index, parts)


def imagenet_table(frame, ref, axes, tasks) -> Table | None:
    """Paper Table 3 layout: rows protocol x init (reference rows first), one top-1 column per arch; `tasks`: the
    task facts of the protocols it shows."""
    eval_data = tasks[0].eval_data
    tasks = tuple(t.name for t in tasks)

    def labels(rows, kind):
        return rows.assign(
            protocol=[protocol_label(x.protocol, x.blocks, x.blocks_part) for x in rows.itertuples()],
            column=rows["arch"].map(arch_label), col_sort=rows["arch"].map(_arch_sort),
            row_sort=[(_protocol_sort(x.protocol, x.blocks, x.blocks_part), kind, _init_rank(x.init),
                       getattr(x, "row", 0), x.method, x.data) for x in rows.itertuples()])

    m = _prepare(frame[frame["task"].isin(tasks) & (frame["metric"] == "top1")], axes)
    return _table(PROTOCOL_TABLE, f"{eval_data} top-1 accuracy (%) by protocol, init and architecture "
                  "(paper Table 3 layout)", ["protocol", "method", "source", "data"], m,
                  _with_reference(ref, tasks, ("top1",)), eval_data, labels)


def task_table(task, frame, ref, axes) -> Table | None:
    """Paper Tables 4 and 5 layout: rows init (reference rows first), columns metric x arch, for one task's facts
    (its name, eval_data, table, table_title, table_metrics)."""
    metrics = task.table_metrics
    multi = len(metrics) > 1

    def labels(rows, kind):
        return rows.assign(
            column=[(f"{METRIC_LABEL.get(x.metric, x.metric)} " if multi else "") + arch_label(x.arch)
                    for x in rows.itertuples()],
            col_sort=[(list(metrics).index(x.metric), _arch_sort(x.arch)) for x in rows.itertuples()],
            row_sort=[(kind, _init_rank(x.init), getattr(x, "row", 0), x.method, x.data)
                      for x in rows.itertuples()])

    m = _prepare(frame[(frame["task"] == task.name) & frame["metric"].isin(metrics)], axes)
    return _table(task.table, task.table_title, ["method", "source", "data"], m,
                  _with_reference(ref, (task.name,), metrics), task.eval_data, labels)


def partial_table(frame, ref, axes) -> Table | None:
    """Paper Figure 9 as a table: rows model x init, one top-1 column per number of blocks tuned."""
    def labels(rows, kind):
        return rows.assign(
            model=rows["arch"].map(arch_label),
            column=[protocol_label("partial", x.blocks, x.blocks_part)[len("partial "):] for x in rows.itertuples()],
            col_sort=[_protocol_sort("partial", x.blocks, x.blocks_part) for x in rows.itertuples()],
            row_sort=[(_arch_sort(x.arch), kind, _init_rank(x.init), getattr(x, "row", 0), x.method, x.data)
                      for x in rows.itertuples()])

    m = _prepare(frame[(frame["task"] == "in1k_partial") & (frame["metric"] == "top1") & frame["blocks"].notna()],
                 axes)
    r = _with_reference(ref, ("in1k_partial",), ("top1",))
    r = r[r["blocks"].notna()] if not r.empty else r
    return _table("fig9_partial", "Partial fine-tuning: ImageNet-1K top-1 (%) by blocks tuned K (paper Figure 9)",
                  ["model", "method", "source", "data"], m, r, PAPER_IMAGENET, labels)


# Knobs an ablation varies together with its axis: Table 1(f) compares block masking at 50 % and 75 %.
CO_VARYING = {"mask_strategy": ("mask_ratio",)}


def ablation_rows(frame: pd.DataFrame, axis: str) -> pd.DataFrame:
    """MAE ImageNet top-1 runs that vary `axis` with every other knob held at the paper's default (or, where
    no run has the default, at the most common value)."""
    rows = frame[(frame["init"] == "mae") & frame["task"].isin(["in1k_finetune", "in1k_linear"])
                 & (frame["metric"] == "top1") & frame[axis].notna()]
    for other in PRETRAIN_AXES:
        if other == axis or other in CO_VARYING.get(axis, ()) or rows.empty:
            continue
        values = rows[other].map(repr)
        keep = repr(PAPER_DEFAULTS[other]) if repr(PAPER_DEFAULTS.get(other)) in set(values) else values.mode()[0]
        rows = rows[values == keep]
    return rows


def _pct(v) -> str:
    return f"{round(float(v) * 100, 6):g}%"


def _strategy_label(r) -> str:
    ratio = r.get("mask_ratio")
    return str(r["mask_strategy"]) + ("" if _missing(ratio) else f", ratio {_pct(ratio)}")


AUGMENT_WORDS = {"none": "none", "fixed_crop": "crop, fixed size", "rrc": "crop, rand size",
                 "rrc_jitter": "crop + color jit"}
# One table per pretraining knob: output name, the reference file's `table`, title, and a run's row label in the
# paper's words (the reference file's `setting` column uses the same words, so paper and measured rows line up).
ABLATIONS = {
    "decoder_depth": ("table1_decoder_depth", "Table 1(a)", "Decoder depth",
                      lambda r: f"decoder depth {_value_text(r['decoder_depth'])}"),
    "decoder_embed_dim": ("table1_decoder_embed_dim", "Table 1(b)", "Decoder width",
                          lambda r: f"decoder width {_value_text(r['decoder_embed_dim'])}"),
    "mask_tokens_in_encoder": ("table1_mask_tokens_in_encoder", "Table 1(c)", "Mask token",
                               lambda r: "encoder w/ [M]" if r["mask_tokens_in_encoder"] else "encoder w/o [M]"),
    "norm_pix_loss": ("table1_norm_pix_loss", "Table 1(d)", "Reconstruction target",
                      lambda r: "pixel (w/ norm)" if r["norm_pix_loss"] else "pixel (w/o norm)"),
    "augment": ("table1_augment", "Table 1(e)", "Data augmentation",
                lambda r: AUGMENT_WORDS.get(r["augment"], str(r["augment"]))),
    "mask_strategy": ("table1_mask_strategy", "Table 1(f)", "Mask sampling", _strategy_label),
    "mask_ratio": ("fig5_mask_ratio", "Figure 5", "Masking ratio", lambda r: f"mask ratio {_pct(r['mask_ratio'])}"),
    "pretrain_epochs": ("fig7_pretrain_epochs", "Figure 7", "Training schedule",
                        lambda r: f"{_value_text(r['pretrain_epochs'])} epochs"),
}
NUMERIC_AXES = ("decoder_depth", "decoder_embed_dim", "mask_ratio", "pretrain_epochs")  # rows in numeric order
WALLCLOCK_TABLE = "Table 2"
SETTING_TABLES = {spec[1] for spec in ABLATIONS.values()} | {WALLCLOCK_TABLE}
# (task, metric) -> column label, column order
ABLATION_COLUMNS = {("in1k_finetune", "top1"): ("fine-tune top-1", 0),
                    ("in1k_linear", "top1"): ("linear probe top-1", 1),
                    ("pretrain", "flops"): ("training FLOPs", 2), ("pretrain", "hours"): ("pretraining hours", 3),
                    ("pretrain", "speedup"): ("speed-up", 4)}
ABLATION_NOTES = {
    "table1": "Paper rows: ViT-L/16, 800-epoch pretraining, the Table 1 defaults (decoder depth 8, width 512, "
              "unnormalized pixels, random resized crop, random masking at 75%) except the knob varied.",
    "table1_mask_tokens_in_encoder": "Paper rows: ViT-L/16, 800-epoch pretraining, the Table 1 defaults except the "
                                     "knob varied; training FLOPs are relative to the encoder without mask tokens.",
    "fig5_mask_ratio": "Paper points: only those the paper states in text or tables (75%, Table 1's default); "
                       "the text also gives 54.6% as the lowest linear-probe point without its ratio, and the other "
                       "points are only in the figure.",
    "fig7_pretrain_epochs": "Paper points: only those the paper states in text or tables (800 epochs, Table 1's "
                            "default); the other schedules are only in the figure.",
}
MEASURED_NOTE = "Measured rows: MAE runs whose init.pretrain varies only this knob; the other knobs at the paper's " \
                "default where run."


def _column(task, metric) -> tuple[str, int]:
    return ABLATION_COLUMNS.get((task, metric), (f"{task} {METRIC_LABEL.get(metric, metric)}", 9))


def _setting_sort(numeric: bool, order: dict):
    """Sort key of a row label: its number (numeric knobs), then the paper's row order, then the label."""
    def key(label: str) -> tuple:
        m = re.search(r"\d+(?:\.\d+)?", label) if numeric else None
        return (float(m.group()) if m else float("inf"), order.get(label, len(order)), label)
    return key


def _setting_labels(order_from: pd.DataFrame, numeric: bool, default: str | None = None, by_model: bool = False):
    """`labels(rows, kind)` for the tables indexed by setting: rows in setting order (within each model when
    `by_model`), the paper's rows first."""
    order = {} if order_from.empty else {v: i for i, v in enumerate(dict.fromkeys(order_from["setting"]))}
    key = _setting_sort(numeric, order)

    def labels(rows, kind):
        columns = [_column(x.task, x.metric) for x in rows.itertuples()]
        return rows.assign(
            model=rows["arch"].map(arch_label), column=[c[0] for c in columns], col_sort=[c[1] for c in columns],
            row_sort=[(_arch_sort(a), key(s)) if by_model else (key(s), kind, _arch_sort(a), str(d))
                      for s, a, d in zip(rows["setting"], rows["arch"], rows["data"])],
            setting=rows["setting"].map(lambda s: s + (" (default)" if s == default else "")))
    return labels


def ablation_table(frame: pd.DataFrame, ref: pd.DataFrame | None, axis: str) -> Table | None:
    """Paper Table 1 (a-f), Figure 5 or Figure 7 for one pretraining knob: rows setting x model (the paper's rows
    and MAE runs that vary only this knob), columns fine-tune / linear-probe top-1 (Table 1(c): training FLOPs)."""
    name, table_id, title, label_of = ABLATIONS[axis]
    r = _reference_of(ref, table_id)
    rows = ablation_rows(frame, axis)
    measured = pd.DataFrame()
    if not rows.empty and rows[axis].map(repr).nunique() >= 2:
        measured = rows.assign(source="measured", method="MAE", setting=[label_of(x) for _, x in rows.iterrows()])
    labels = _setting_labels(r, axis in NUMERIC_AXES, label_of(PAPER_DEFAULTS))
    versus = {"mask_ratio": " vs masking ratio", "pretrain_epochs": " vs pretraining epochs"}.get(axis, "")
    table = _table(name, f"{title}: ImageNet-1K top-1 (%){versus} (paper {table_id})",
                   ["setting", "model", "source", "data"], measured, r, PAPER_IMAGENET, labels)
    if table is not None:
        table.notes = ([ABLATION_NOTES.get(name, ABLATION_NOTES["table1"])] if not r.empty else []) + \
            ([MEASURED_NOTE] if not measured.empty else [])
    return table


def wallclock_table(ref: pd.DataFrame | None) -> Table | None:
    """Paper Table 2: pretraining wall-clock hours and speed-up of the encoder without mask tokens, by encoder and
    decoder depth (the paper's rows; `mae-bench bench pretrain` measures our implementation)."""
    r = _reference_of(ref, WALLCLOCK_TABLE)
    table = _table("table2_wallclock", "Wall-clock time of MAE pretraining, 800 epochs (paper Table 2)",
                   ["setting", "model", "source", "data"], pd.DataFrame(), r, PAPER_IMAGENET,
                   _setting_labels(r, False, by_model=True))
    if table is not None:
        table.notes = ["Paper rows: 128 TPU-v3 cores, TensorFlow, decoder width 512, mask ratio 75%; the speed-up is "
                       "relative to the encoder with mask tokens [M] at decoder depth 8, and the ViT-H hours with [M] "
                       "are estimated from ten epochs. Our implementation: `mae-bench bench pretrain` prints the same "
                       "table (benchmarks/RESULTS.md)."]
    return table


def add_seed_intervals(table: Table, level: float) -> None:
    """Each measured cell of n > 1 runs gets the Student t interval of its mean over the runs (seeds):
    mean ± t_{(1+level)/2, n-1} · std / sqrt(n)."""
    from scipy.stats import t as student_t
    cells = table.cells
    lo, hi = [], []
    for _, c in cells.iterrows():
        if c["kind"] != "measured" or _missing(c["n"]) or c["n"] < 2:
            lo.append(None)
            hi.append(None)
            continue
        half = float(student_t.ppf((1 + level) / 2, c["n"] - 1)) * float(c["std"]) / float(c["n"]) ** 0.5
        lo.append(float(c["value"]) - half)
        hi.append(float(c["value"]) + half)
    table.cells = cells.assign(ci_low=pd.Series(lo, dtype=object, index=cells.index),
                               ci_high=pd.Series(hi, dtype=object, index=cells.index))
    if any(v is not None for v in lo):
        table.notes.append(f"[low, high]: the {100 * level:g}% Student t interval of a cell's mean over its runs "
                           "(seeds).")


# ---- the command ------------------------------------------------------------------------
def make_tables(frame: pd.DataFrame, ref: pd.DataFrame | None, tasks) -> list[Table]:
    """Every table there is something to show for, in output order: the protocol table, Figure 9, a table per
    other task (in the order of `tasks`), the ablations."""
    axes = variant_axes(frame)
    protocols = [t for t in tasks if t.table == PROTOCOL_TABLE]
    tables = [imagenet_table(frame, ref, axes, protocols) if protocols else None, partial_table(frame, ref, axes),
              *(task_table(t, frame, ref, axes) for t in tasks if t.table != PROTOCOL_TABLE)]
    order = ["decoder_depth", "decoder_embed_dim", "mask_tokens_in_encoder", "norm_pix_loss", "augment",
             "mask_strategy", "mask_ratio"]  # the paper's order: Table 1 a-f, Figure 5, Table 2, Figure 7
    tables += [ablation_table(frame, ref, axis) for axis in order]
    tables += [wallclock_table(ref), ablation_table(frame, ref, "pretrain_epochs")]
    return [t for t in tables if t is not None]


def build_tables(results_dir, out_dir, tasks, *, reference: str | Path | None = None, decimals: int = 1,
                 show_reference: bool = True, plots: bool = True, echo: bool = True, warn=None, ci: float | None = None,
                 baseline: str | None = None, versus: dict | None = None) -> list[Path]:
    """Read every result.json under `results_dir`, write each table as OUT/<name>.{md,csv,tex}, the PNG plots,
    OUT/runs.csv (one row per run) and OUT/tables.md (all tables); print the Markdown when `echo`. `tasks`: the facts
    of every task (`benchmarks.tasks.TASKS.values()`: name, eval_data, table, table_title, table_metrics), which
    say the tables there are. With no result files, the tables hold the reference rows alone. `ci` (a level, e.g.
    0.95): each seed group's t interval of its mean; `baseline` ("TABLE:ROW"): each row's paired difference to
    that row, with its bootstrap interval (results.versus; `versus`: its resamples, seed, level). Returns the
    files written."""
    tasks = list(tasks)
    frame = load_frame(results_dir, warn)
    frame = frame[frame["task"].isin([t.name for t in tasks])]  # only the tasks it has tables for (no pretraining)
    ref = load_reference(reference or REFERENCE_CSV) if show_reference else None
    tables = make_tables(frame, ref, tasks)
    if ci is not None and not 0 < ci < 1:
        raise ResultError(f"--ci takes a level in (0, 1), e.g. 0.95; got {ci}")
    if ci:
        for t in tables:
            add_seed_intervals(t, ci)
    if baseline:
        from .versus import mark_baseline  # reads the runs' per-image evidence: only when asked
        mark_baseline(tables, baseline, results_dir, **(versus or {}))
    out = Path(out_dir)
    written, texts = [], []
    for t in tables:
        texts.append(t.markdown(decimals, legend=False))
        written += [write_text_atomic(out / f"{t.name}.md", t.markdown(decimals)),
                    write_text_atomic(out / f"{t.name}.csv", t.csv()),
                    write_text_atomic(out / f"{t.name}.tex", t.latex(decimals))]
    if plots:
        from .plots import plot_tables  # matplotlib only when plots are asked for
        written += plot_tables(tables, out)
    n_runs = frame["file"].nunique()
    head = (f"# mae-bench tables\n\n{n_runs} result file{'s' if n_runs != 1 else ''} from {results_dir}"
            + ("; no measured runs: the paper's reference numbers only" if n_runs == 0 else "") + ".\n\n"
            + LEGEND + "\n")
    everything = "\n".join([head, *texts])
    written.append(write_text_atomic(out / "tables.md", everything))
    if n_runs:
        written.append(write_text_atomic(out / "runs.csv", runs_table(frame).to_csv(index=False, lineterminator="\n")))
    if echo:
        sys.stdout.write(everything)
        sys.stdout.flush()
    return written
