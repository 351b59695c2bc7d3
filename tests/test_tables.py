"""`mae-bench tables`: hand-written result.json files -> the expected Markdown / CSV; reference rows; mean ± std;
pretraining ablations; bad input. No torch needed by `results` (checked in a subprocess)."""
import csv
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.tasks import TASKS
from results.record import ResultError, write_result
from results.tables import LEGEND, build_tables

REPO = Path(__file__).resolve().parents[1]
SHA_MAE = "a" * 64
SHA_SUP = "5" * 64
ENV = {"torch": "2.14.1", "timm": "1.0.15", "device": "cpu", "python": "3.11.9", "git_sha": "13020b4"}
IN1K_DATA = {"name": "synthetic-imagenet", "root": "/data/synth/imagenet", "split": "val", "subset": None,
             "num_classes": 8, "train_images": 1600, "val_images": 400, "skipped_samples": 0}
PRETRAIN = {"model": {"arch": "vit_tiny_patch16", "img_size": 64, "mask_ratio": 0.75, "mask_strategy": "random",
                      "decoder_depth": 8, "decoder_embed_dim": 512, "norm_pix_loss": True,
                      "mask_tokens_in_encoder": False},
            "schedule": {"epochs": 120, "batch_size": 32}, "data": {"augment": "rrc", "crop_scale": [0.2, 1.0]}}


def record(task, init, metrics, *, arch="vit_tiny_patch16", dataset=IN1K_DATA, pretrain=None, blocks=None,
           blocks_part="all"):
    """A result record as `benchmarks.tasks.run_task` writes it (recipe abridged)."""
    protocol = {"in1k_linear": "linear", "in1k_partial": "partial", "in1k_finetune": "finetune"}.get(task, task)
    ckpt, sha = {"mae": ("runs/mae/checkpoint-last.pth", SHA_MAE),
                 "supervised": ("runs/sup/checkpoint-last.pth", SHA_SUP), "scratch": (None, None)}[init]
    rec = {"task": task, "protocol": protocol, "arch": arch, "init": {"kind": init, "ckpt": ckpt, "sha256": sha},
           "dataset": dict(dataset), "metrics": metrics,
           "recipe": {"task": task, "protocol": protocol, "schedule": {"epochs": 10, "batch_size": 64}},
           "env": ENV, "started": "2026-11-24T20:00:00+00:00", "finished": "2026-11-24T20:05:00+00:00",
           "wall_s": 300.0}
    if pretrain is not None:
        rec["init"]["pretrain"] = pretrain
    if protocol == "partial":
        rec.update(blocks=blocks, blocks_part=blocks_part)
    return rec


def write_runs(root: Path, runs: dict) -> Path:
    for name, rec in runs.items():
        write_result(root / name, rec)
    return root


SMALL_REFERENCE = """source,table,model,pretrain,task,metric,value,verified,notes,variant
MAE paper,Table 3,ViT-B/16,MAE IN1K,in1k_finetune,top1,83.6,from official repo README,224px fine-tune,
MAE paper,Table 4,ViT-B/16,MAE IN1K,coco_det,bbox_AP,50.3,recalled (verify),,
"""


@pytest.fixture
def small(tmp_path):
    coco = {"name": "synthetic-coco", "root": "/data/synth/coco", "split": "val2017", "subset": 50, "images": 50}
    runs = {
        "ft_mae_s0": record("in1k_finetune", "mae", {"top1": 60.0, "top5": 95.0, "top1_best": 61.0}),
        "ft_mae_s1": record("in1k_finetune", "mae", {"top1": 64.0, "top5": 96.0, "top1_best": 64.0}),
        "ft_scratch": record("in1k_finetune", "scratch", {"top1": 41.5, "top5": 80.0, "top1_best": 42.0}),
        "lin": record("in1k_linear", "mae", {"top1": 30.0, "top5": 70.0}),
        "det": record("coco_det", "mae", {"bbox_AP": 12.5, "bbox_AP50": 30.0, "segm_AP": 11.0}, dataset=coco),
    }
    ref = tmp_path / "ref.csv"
    ref.write_text(SMALL_REFERENCE)
    return write_runs(tmp_path / "results", runs), ref


DATA = "synthetic-imagenet/val · 400 img · full"
EXPECTED_IN1K_MD = f"""## ImageNet-1K top-1 accuracy (%) by protocol, init and architecture (paper Table 3 layout)

| protocol | method | source | data | ViT-Ti/16 | ViT-B/16 | id |
|---|---|---|---|---|---|---|
| linear probe | MAE | measured | {DATA} | 30.0 | - | m1 |
| fine-tune | MAE IN1K | MAE paper, Table 3 | ImageNet-1K · paper scale | - | 83.6 |  |
| fine-tune | scratch | measured | {DATA} | 41.5 | - | m2 |
| fine-tune | MAE | measured | {DATA} | 62.0 ± 2.8 (n=2) | - | m3 |

Provenance of the measured cells (files relative to the results folder):

- m1 · ViT-Ti/16: 1 run: lin/result.json; ckpt sha256 aaaaaaaaaaaa; {DATA}
- m2 · ViT-Ti/16: 1 run: ft_scratch/result.json; ckpt sha256 none; {DATA}
- m3 · ViT-Ti/16: 2 runs: ft_mae_s0/result.json, ft_mae_s1/result.json; ckpt sha256 aaaaaaaaaaaa; {DATA}

{LEGEND}
"""
EXPECTED_IN1K_CSV = f"""protocol,method,source,data,column,metric,arch,value,std,n,kind,verified,files,sha256,dataset,split,subset,notes,id
linear probe,MAE,measured,{DATA},ViT-Ti/16,top1,vit_tiny_patch16,30.0,,1,measured,measured,lin/result.json,{SHA_MAE},synthetic-imagenet,val,,,m1
fine-tune,MAE IN1K,"MAE paper, Table 3",ImageNet-1K · paper scale,ViT-B/16,top1,vit_base_patch16,83.6,,,reference,from official repo README,ref.csv:2,,ImageNet-1K,val,,224px fine-tune,
fine-tune,scratch,measured,{DATA},ViT-Ti/16,top1,vit_tiny_patch16,41.5,,1,measured,measured,ft_scratch/result.json,,synthetic-imagenet,val,,,m2
fine-tune,MAE,measured,{DATA},ViT-Ti/16,top1,vit_tiny_patch16,62.0,2.828427,2,measured,measured,ft_mae_s0/result.json; ft_mae_s1/result.json,{SHA_MAE},synthetic-imagenet,val,,,m3
"""
COCO_DATA = "synthetic-coco/val2017 · 50 img · subset 50"
EXPECTED_COCO_MD = f"""## COCO detection and instance segmentation, Mask R-CNN: APbox and APmask (paper Table 4 layout)

| method | source | data | APbox ViT-Ti/16 | APbox ViT-B/16 | APmask ViT-Ti/16 | id |
|---|---|---|---|---|---|---|
| MAE IN1K | MAE paper, Table 4 | COCO val2017 · paper scale | - | 50.3† | - |  |
| MAE | measured | {COCO_DATA} | 12.5 | - | 11.0 | m1 |

Provenance of the measured cells (files relative to the results folder):

- m1 · APbox ViT-Ti/16: 1 run: det/result.json; ckpt sha256 aaaaaaaaaaaa; {COCO_DATA}
- m1 · APmask ViT-Ti/16: 1 run: det/result.json; ckpt sha256 aaaaaaaaaaaa; {COCO_DATA}

{LEGEND}
"""


def test_tables_from_hand_written_results_equal_the_expected_markdown_and_csv(small, tmp_path, capsys):
    results, ref = small
    out = tmp_path / "out"
    written = build_tables(results, out, TASKS.values(), reference=ref, plots=False)
    names = sorted(p.name for p in written)
    assert names == sorted(f"{t}.{ext}" for t in ("in1k", "coco") for ext in ("md", "csv", "tex")) + \
        ["runs.csv", "tables.md"]
    assert (out / "in1k.md").read_text() == EXPECTED_IN1K_MD
    assert (out / "in1k.csv").read_text() == EXPECTED_IN1K_CSV
    assert (out / "coco.md").read_text() == EXPECTED_COCO_MD
    tex = (out / "in1k.tex").read_text()
    assert r"62.0 $\pm$ 2.8 (n=2)" in tex and r"\begin{tabular}{llllccc}" in tex and "ViT-Ti/16" in tex
    printed = capsys.readouterr().out  # the Markdown goes to stdout too
    assert printed == (out / "tables.md").read_text() and "| fine-tune | MAE | measured |" in printed
    runs = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    assert [r["file"] for r in runs] == ["det/result.json", "ft_mae_s0/result.json", "ft_mae_s1/result.json",
                                          "ft_scratch/result.json", "lin/result.json"]
    assert runs[0]["bbox_AP"] == "12.5" and runs[0]["subset"] == "50" and runs[1]["top1_best"] == "61.0"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes leave no temp files


def test_mean_and_std_over_duplicate_runs(tmp_path):
    values = [61.0, 63.5, 58.25, 70.125]
    runs = {f"seed{i}": record("in1k_linear", "supervised", {"top1": v, "top5": 90.0}) for i, v in enumerate(values)}
    runs["other_arch"] = record("in1k_linear", "supervised", {"top1": 10.0, "top5": 50.0}, arch="vit_small_patch16")
    runs["subset"] = record("in1k_linear", "supervised", {"top1": 20.0, "top5": 50.0},
                            dataset={**IN1K_DATA, "subset": 100, "val_images": 100})
    build_tables(write_runs(tmp_path / "r", runs), tmp_path / "out", TASKS.values(), plots=False, echo=False,
                 show_reference=False)
    cells = list(csv.DictReader(io.StringIO((tmp_path / "out" / "in1k.csv").read_text())))
    by = {(c["column"], c["data"]): c for c in cells}
    dup = by[("ViT-Ti/16", DATA)]
    assert float(dup["value"]) == pytest.approx(statistics.mean(values), abs=1e-6)
    assert float(dup["std"]) == pytest.approx(statistics.stdev(values), abs=1e-6)  # sample std (ddof 1)
    assert dup["n"] == "4" and dup["files"].count("result.json") == 4
    # another arch or another subset is another setting, never averaged in
    assert by[("ViT-S/16", DATA)]["value"] == "10.0" and by[("ViT-S/16", DATA)]["n"] == "1"
    sub = by[("ViT-Ti/16", "synthetic-imagenet/val · 100 img · subset 100")]
    assert sub["value"] == "20.0" and sub["subset"] == "100"
    md = (tmp_path / "out" / "in1k.md").read_text()
    expected = f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} (n=4)"
    assert f"| linear probe | supervised | measured | {DATA} | {expected} | 10.0 | m2 |" in md


def _reference_rows():
    with open(REPO / "results" / "reference" / "mae_reference.csv", newline="") as f:
        return list(csv.DictReader(f))


# Where each reference row must be shown: the paper's ablation tables and figures by the file's `table` column,
# every other row by its task.
ABLATION_OUTPUTS = {"Table 1(a)": "table1_decoder_depth", "Table 1(b)": "table1_decoder_embed_dim",
                    "Table 1(c)": "table1_mask_tokens_in_encoder", "Table 1(d)": "table1_norm_pix_loss",
                    "Table 1(e)": "table1_augment", "Table 1(f)": "table1_mask_strategy", "Figure 5": "fig5_mask_ratio",
                    "Figure 7": "fig7_pretrain_epochs", "Table 2": "table2_wallclock"}
TASK_OUTPUTS = {"in1k_linear": {"in1k"}, "in1k_finetune": {"in1k"}, "in1k_partial": {"in1k", "fig9_partial"},
                "coco_det": {"coco"}, "ade20k_seg": {"ade20k"}}
PAPER_TITLES = ["paper Table 1(a)", "paper Table 1(b)", "paper Table 1(c)", "paper Table 1(d)", "paper Table 1(e)",
                "paper Table 1(f)", "paper Table 2", "paper Table 3", "paper Table 4", "paper Table 5", "paper Figure 5",
                "paper Figure 7", "paper Figure 9"]


def test_reference_rows_equal_the_reference_file(tmp_path):
    (tmp_path / "empty").mkdir()
    written = build_tables(tmp_path / "empty", tmp_path / "out", TASKS.values(), plots=True, echo=False)
    out = tmp_path / "out"
    names = {p.stem for p in written if p.suffix == ".md"} - {"tables"}
    assert names == {"in1k", "fig9_partial", "coco", "ade20k", *ABLATION_OUTPUTS.values()}
    assert {p.name for p in written if p.suffix == ".png"} == {"fig5_mask_ratio.png", "fig7_pretrain_epochs.png",
                                                               "fig9_partial.png"}
    assert not (out / "runs.csv").exists()
    from PIL import Image
    assert all(Image.open(out / f"{n}.png").size[0] > 100 for n in ("fig5_mask_ratio", "fig7_pretrain_epochs"))
    shown = {}
    for name in names:
        for c in csv.DictReader(io.StringIO((out / f"{name}.csv").read_text())):
            assert c["kind"] == "reference"
            row = int(c["files"].split(":")[1])
            shown.setdefault(row, set()).add((name, c["value"], c["verified"], c["arch"]))
    ref = _reference_rows()
    assert sorted(shown) == list(range(2, len(ref) + 2))  # every reference row is in some table
    arch = {"ViT-B/16": "vit_base_patch16", "ViT-L/16": "vit_large_patch16", "ViT-H/14": "vit_huge_patch14"}
    for i, r in enumerate(ref, start=2):
        where = {ABLATION_OUTPUTS[r["table"]]} if r["table"] in ABLATION_OUTPUTS else TASK_OUTPUTS[r["task"]]
        assert shown[i] == {(t, str(float(r["value"])), r["verified"], arch[r["model"]]) for t in where}
    # the Markdown shows each number as written, marked † while unverified
    md = "".join((out / f"{n}.md").read_text() for n in sorted(names))
    assert "| MAE IN1K | mmsegmentation, configs/mae | ADE20K val · paper scale | 48.13 | - |  |" in md
    assert "| supervised IN1K | MAE paper, Table 5 | ADE20K val · paper scale | 47.4 | 49.9 |  |" in md
    assert "| fine-tune | MAE IN1K | MAE paper, Table 3, 448px | ImageNet-1K · paper scale | - | - | 87.8 |  |" in md
    assert ("| encoder w/ [M] | ViT-L/16 | MAE paper, Table 1(c) | ImageNet-1K · paper scale | 84.2 | 59.6 "
            "| 3.3× |  |") in md
    unverified = [r for r in ref if not r["verified"].strip() or "recalled (verify)" in r["verified"]]
    legend = md.count("† = no checked source")
    assert md.count("†") == len(unverified) + legend


def test_tables_on_no_results_print_every_table_and_figure(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["tables", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    titles = [line for line in printed.splitlines() if line.startswith("## ")]
    for name in PAPER_TITLES:
        assert sum(f"{name})" in t or f"{name} " in t for t in titles) == 1, name
    for r in _reference_rows():  # every reference number is printed, as written
        assert f"| {r['value']}" in printed


def _ref_value(rows, table, model, pretrain, task, metric, setting=""):
    hits = [r["value"] for r in rows if (r["table"], r["model"], r["pretrain"], r["task"], r["metric"],
                                         r["setting"]) == (table, model, pretrain, task, metric, setting)]
    assert len(hits) == 1, (table, model, pretrain, task, metric, setting, hits)
    return hits[0]


# A sample of the paper's numbers (He et al., arXiv 2111.06377), read off its tables and text.
PAPER_SAMPLE = [
    ("Table 1(a)", "ViT-L/16", "MAE IN1K", "in1k_finetune", "top1", "decoder depth 8", "84.9"),
    ("Table 1(a)", "ViT-L/16", "MAE IN1K", "in1k_linear", "top1", "decoder depth 8", "73.5"),
    ("Table 1(a)", "ViT-L/16", "MAE IN1K", "in1k_finetune", "top1", "decoder depth 1", "84.8"),
    ("Table 1(a)", "ViT-L/16", "MAE IN1K", "in1k_linear", "top1", "decoder depth 1", "65.5"),
    ("Table 1(b)", "ViT-L/16", "MAE IN1K", "in1k_linear", "top1", "decoder width 128", "69.1"),
    ("Table 1(c)", "ViT-L/16", "MAE IN1K", "in1k_linear", "top1", "encoder w/ [M]", "59.6"),
    ("Table 1(c)", "ViT-L/16", "MAE IN1K", "pretrain", "flops", "encoder w/ [M]", "3.3"),
    ("Table 1(d)", "ViT-L/16", "MAE IN1K", "in1k_finetune", "top1", "pixel (w/ norm)", "85.4"),
    ("Table 1(d)", "ViT-L/16", "MAE IN1K", "in1k_linear", "top1", "dVAE token", "71.6"),
    ("Table 1(e)", "ViT-L/16", "MAE IN1K", "in1k_linear", "top1", "none", "65.7"),
    ("Table 1(f)", "ViT-L/16", "MAE IN1K", "in1k_finetune", "top1", "block, ratio 75%", "82.8"),
    ("Table 1(f)", "ViT-L/16", "MAE IN1K", "in1k_linear", "top1", "grid, ratio 75%", "66.0"),
    ("Figure 5", "ViT-L/16", "MAE IN1K", "in1k_linear", "top1", "mask ratio 75%", "73.5"),
    ("Figure 7", "ViT-L/16", "MAE IN1K", "in1k_finetune", "top1", "800 epochs", "84.9"),
    ("Table 2", "ViT-L/16", "MAE IN1K", "pretrain", "speedup", "encoder w/o [M], decoder depth 8", "2.8"),
    ("Table 2", "ViT-H/14", "MAE IN1K", "pretrain", "hours", "encoder w/o [M], decoder depth 1", "29.3"),
    ("Table 3", "ViT-B/16", "DINO IN1K", "in1k_finetune", "top1", "", "82.8"),
    ("Table 3", "ViT-L/16", "MoCo v3 IN1K", "in1k_finetune", "top1", "", "84.1"),
    ("Table 3", "ViT-L/16", "BEiT IN1K+DALLE", "in1k_finetune", "top1", "", "85.2"),
    ("Table 3", "ViT-H/14", "scratch, our impl.", "in1k_finetune", "top1", "", "83.1"),
    ("Table 4", "ViT-L/16", "MoCo v3 IN1K", "coco_det", "segm_AP", "", "44.0"),
    ("Table 4", "ViT-B/16", "BEiT IN1K+DALLE", "coco_det", "bbox_AP", "", "49.8"),
    ("Table 5", "ViT-L/16", "BEiT IN1K+DALLE", "ade20k_seg", "mIoU", "", "53.3"),
    ("Table 5", "ViT-B/16", "MoCo v3 IN1K", "ade20k_seg", "mIoU", "", "47.3"),
    ("Figure 9", "ViT-L/16", "MAE IN1K", "in1k_partial", "top1@blocks=1", "", "81.0"),
    ("Figure 9", "ViT-L/16", "MoCo v3 IN1K", "in1k_partial", "top1@blocks=0", "", "77.6"),
]


@pytest.mark.parametrize("table,model,pretrain,task,metric,setting,value", PAPER_SAMPLE)
def test_reference_file_holds_the_papers_numbers(table, model, pretrain, task, metric, setting, value):
    assert _ref_value(_reference_rows(), table, model, pretrain, task, metric, setting) == value


def test_reference_sources_are_plain_citations():
    """Each row names where a reader can check it: the paper's table or section (and page), or a public repository's
    file; never a build machine's path or a search tool's internals."""
    for r in _reference_rows():
        v = r["verified"]
        assert v.strip() and "recalled (verify)" not in v, r
        assert not any(bad in v.lower() for bad in ("index", "clipping", "file id", "/work/", "shared list")), v
        if r["source"] == "MAE paper":
            assert v.startswith("paper ") and ("p. " in v or "Appendix" in v), v
        else:
            assert "README.md" in v and "/" in v.split(",")[0], v
    readme = (REPO / "results" / "reference" / "README.md").read_text()
    assert "/work/" not in readme and "shared list" not in readme


UNVERIFIED_REFERENCE = """source,table,model,pretrain,task,metric,value,verified,notes
MAE paper,Table 3,ViT-B/16,MAE IN1K,in1k_finetune,top1,83.6,paper Table 3,
MAE paper,Table 3,ViT-L/16,MAE IN1K,in1k_finetune,top1,85.9,recalled (verify),
MAE paper,Table 3,ViT-H/14,MAE IN1K,in1k_finetune,top1,86.9,,
MAE paper,Figure 9,ViT-L/16,MAE IN1K,in1k_partial,top1@blocks=1,81.0,recalled (verify),
"""


def test_rows_without_a_checked_source_are_marked_in_every_output(tmp_path):
    ref = tmp_path / "old.csv"  # an older file: no `variant` and no `setting` column
    ref.write_text(UNVERIFIED_REFERENCE)
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    build_tables(tmp_path / "empty", out, TASKS.values(), reference=ref, plots=False, echo=False)
    md = (out / "in1k.md").read_text()
    paper = "MAE paper, Table 3 | ImageNet-1K · paper scale"
    assert f"| fine-tune | MAE IN1K | {paper} | 83.6 | 85.9† | 86.9† |  |" in md
    assert "| partial K=1 | MAE IN1K | MAE paper, Figure 9 | ImageNet-1K · paper scale | - | 81.0† | - |  |" in md
    assert "| ViT-L/16 | MAE IN1K | MAE paper, Figure 9 | ImageNet-1K · paper scale | 81.0† |  |" in \
        (out / "fig9_partial.md").read_text()
    assert r"85.9$^\dagger$" in (out / "in1k.tex").read_text() and r"86.9$^\dagger$" in (out / "in1k.tex").read_text()
    cells = {c["value"]: c["verified"] for c in csv.DictReader(io.StringIO((out / "in1k.csv").read_text()))}
    assert cells == {"83.6": "paper Table 3", "85.9": "recalled (verify)", "86.9": "", "81.0": "recalled (verify)"}
    from results.reference import is_unverified
    assert [is_unverified(v) for v in ("paper Table 3", "recalled (verify)", "", "  ")] == [False, True, True, True]


def test_partial_curve_and_pretraining_ablations(tmp_path):
    def pre(**model):
        return {**PRETRAIN, "model": {**PRETRAIN["model"], **model}}

    runs = {f"partial_k{k}": record("in1k_partial", "mae", {"top1": v, "top5": 90.0}, blocks=k, pretrain=pre())
            for k, v in ((0, 30.0), (1, 40.0), (2, 45.0))}
    runs["partial_k1_mlp"] = record("in1k_partial", "mae", {"top1": 38.0}, blocks=1, blocks_part="mlp",
                                    pretrain=pre())
    runs["ft_dec1"] = record("in1k_finetune", "mae", {"top1": 50.0}, pretrain=pre(decoder_depth=1))
    runs["ft_dec8"] = record("in1k_finetune", "mae", {"top1": 52.0}, pretrain=pre())
    runs["lin_dec8"] = record("in1k_linear", "mae", {"top1": 33.0}, pretrain=pre())
    runs["ft_mask50"] = record("in1k_finetune", "mae", {"top1": 49.0}, pretrain=pre(mask_ratio=0.5))
    # varies two knobs at once: in neither the decoder-depth nor the mask-ratio ablation
    runs["ft_mask50_dec1"] = record("in1k_finetune", "mae", {"top1": 47.0}, pretrain=pre(mask_ratio=0.5,
                                                                                         decoder_depth=1))
    runs["no_pretrain_info"] = record("in1k_finetune", "mae", {"top1": 10.0})
    written = build_tables(write_runs(tmp_path / "r", runs), tmp_path / "out", TASKS.values(), echo=False,
                           show_reference=False)
    names = {p.name for p in written}
    assert {"fig9_partial.png", "fig5_mask_ratio.png", "fig5_mask_ratio.csv", "table1_decoder_depth.tex"} <= names
    assert not [n for n in names if n.startswith(("table1_decoder_embed_dim", "table1_augment", "table1_mask_ratio"))]
    out = tmp_path / "out"
    md = (out / "fig9_partial.md").read_text()
    assert "| model | method | source | data | K=0 | K=1 | K=1 (MLP) | K=2 | id |" in md
    assert (f"| ViT-Ti/16 | MAE (mask ratio 0.75, decoder depth 8) | measured | {DATA} | 30.0 | 40.0 | 38.0 | 45.0 | m1 |"
            in md)
    dec = list(csv.DictReader(io.StringIO((out / "table1_decoder_depth.csv").read_text())))
    assert [(c["setting"], c["column"], c["value"], c["files"]) for c in dec] == [
        ("decoder depth 1", "fine-tune top-1", "50.0", "ft_dec1/result.json"),
        ("decoder depth 8 (default)", "fine-tune top-1", "52.0", "ft_dec8/result.json"),
        ("decoder depth 8 (default)", "linear probe top-1", "33.0", "lin_dec8/result.json")]
    mask = (out / "fig5_mask_ratio.md").read_text()
    assert f"| mask ratio 50% | ViT-Ti/16 | measured | {DATA} | 49.0 | - | m1 |" in mask
    assert f"| mask ratio 75% (default) | ViT-Ti/16 | measured | {DATA} | 52.0 | 33.0 | m2 |" in mask
    assert "47.0" not in mask and "10.0" not in mask
    # runs without init.pretrain keep their own row in the main table
    assert "| fine-tune | MAE (mask ratio ?, decoder depth ?) | measured |" in (out / "in1k.md").read_text()


def test_measured_ablation_rows_sit_beside_the_papers_rows(tmp_path):
    def pre(model=None, epochs=800):
        return {**PRETRAIN, "model": {**PRETRAIN["model"], **(model or {})},
                "schedule": {**PRETRAIN["schedule"], "epochs": epochs}}

    runs = {f"ft_dec{d}": record("in1k_finetune", "mae", {"top1": 40.0 + d}, pretrain=pre({"decoder_depth": d}))
            for d in (1, 3, 8)}
    runs.update({f"lin_ep{e}": record("in1k_linear", "mae", {"top1": e / 100}, pretrain=pre(epochs=e))
                 for e in (100, 800)})
    written = build_tables(write_runs(tmp_path / "r", runs), tmp_path / "out", TASKS.values(), echo=False)
    out = tmp_path / "out"
    rows = [line for line in (out / "table1_decoder_depth.md").read_text().splitlines() if line.startswith("| decoder")]
    paper = "| ViT-L/16 | MAE paper, Table 1(a) | ImageNet-1K · paper scale |"
    ours = f"| ViT-Ti/16 | measured | {DATA} |"
    assert rows == [f"| decoder depth 1 {paper} 84.8 | 65.5 |  |", f"| decoder depth 1 {ours} 41.0 | - | m1 |",
                    f"| decoder depth 2 {paper} 84.9 | 70.0 |  |", f"| decoder depth 3 {ours} 43.0 | - | m2 |",
                    f"| decoder depth 4 {paper} 84.9 | 71.9 |  |",
                    f"| decoder depth 8 (default) {paper} 84.9 | 73.5 |  |",
                    f"| decoder depth 8 (default) {ours} 48.0 | 8.0 | m3 |",
                    f"| decoder depth 12 {paper} 84.4 | 73.3 |  |"]
    fig7 = (out / "fig7_pretrain_epochs.md").read_text()
    table1f = build_tables(write_runs(tmp_path / "f", {
        f"{k}{r}": record("in1k_finetune", "mae", {"top1": 10 * r}, pretrain=pre({"mask_strategy": k, "mask_ratio": r}))
        for k, r in (("random", 0.75), ("block", 0.5), ("block", 0.75))}), tmp_path / "out_f", TASKS.values(),
        echo=False, plots=False)
    assert table1f and all(f"| {label} | ViT-Ti/16 | measured" in (tmp_path / "out_f" / "table1_mask_strategy.md")
                           .read_text() for label in ("random, ratio 75% (default)", "block, ratio 50%", "block, ratio 75%"))
    assert f"| 100 epochs | ViT-Ti/16 | measured | {DATA} | - | 1.0 | m1 |" in fig7
    assert "| 800 epochs (default) | ViT-L/16 | MAE paper, Figure 7 | ImageNet-1K · paper scale | 84.9 | 73.5 |  |" \
        in fig7
    from PIL import Image
    assert out / "fig7_pretrain_epochs.png" in written
    assert Image.open(out / "fig7_pretrain_epochs.png").size[0] > Image.open(out / "fig5_mask_ratio.png").size[0]


def test_malformed_results_are_skipped_with_a_warning(small, tmp_path, capsys):
    results, ref = small
    (results / "broken").mkdir()
    (results / "broken" / "result.json").write_text("{not json")
    (results / "partial").mkdir()
    (results / "partial" / "result.json").write_text(json.dumps({"task": "in1k_linear", "metrics": {}}))
    build_tables(results, tmp_path / "out", TASKS.values(), reference=ref, plots=False, echo=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("warning: skipping") for line in err)
    assert "broken/result.json" in err[0] and "partial/result.json" in err[1] and "missing keys" in err[1]
    assert (tmp_path / "out" / "in1k.md").read_text() == EXPECTED_IN1K_MD  # the good runs, unchanged

    only_bad = tmp_path / "bad"
    (only_bad / "x").mkdir(parents=True)
    (only_bad / "x" / "result.json").write_text("[]")
    with pytest.raises(ResultError, match="none of the 1 result files"):
        build_tables(only_bad, tmp_path / "out2", TASKS.values(), plots=False, echo=False)


def test_cli_tables_prints_the_tables_and_one_line_errors(small, tmp_path, capsys):
    results, ref = small
    out = tmp_path / "out"
    assert main(["tables", "--results", str(results), "--out", str(out), "--set", f"reference={ref}",
                 "--set", "decimals=2", "--set", "plots=False"]) == 0
    printed = capsys.readouterr().out
    assert "62.00 ± 2.83 (n=2)" in printed and printed.rstrip().endswith(f"wrote 8 files to {out}")
    code = main(["tables", "--results", str(tmp_path / "missing"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == f"mae-bench: error: results folder not found: {tmp_path / 'missing'}"
    (tmp_path / "badref.csv").write_text("source,value\nx,1\n")
    code = main(["tables", "--results", str(results), "--out", str(out), "--set", f"reference={tmp_path / 'badref.csv'}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("mae-bench: error: reference file") and "missing columns" in err


def test_results_tables_and_regression_import_without_torch(tmp_path):
    code = ("import sys, results.tables, results.regression, results.frame, results.reference, results.compare, "
            "results.paired, results.versus, results.evidence, results.coco_file; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    # nor do the CLI and its task registry, nor `mae-bench tables`
    code = ("import sys; from benchmarks.cli import main; "
            f"main(['tables', '--results', {str(tmp_path)!r}, '--out', {str(tmp_path / 'out')!r}, '--set', "
            "'plots=False']); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)


def test_runs_of_different_dataset_roots_are_not_pooled(tmp_path):
    """Three roots that all call themselves imagenet/val: three cells, each naming its root, not one mean of 50 ± 43."""
    roots = ["/data/a/imagenet", "/data/b/imagenet", "/data/c/imagenet"]
    runs = {f"r{i}": record("in1k_linear", "mae", {"top1": v, "top5": 90.0}, dataset={**IN1K_DATA, "root": root})
            for i, (root, v) in enumerate(zip(roots, [0.0, 75.0, 75.0]))}
    runs["r2_again"] = record("in1k_linear", "mae", {"top1": 85.0, "top5": 90.0},
                              dataset={**IN1K_DATA, "root": roots[2] + "/"})  # the same folder, spelt with a slash
    build_tables(write_runs(tmp_path / "r", runs), tmp_path / "out", TASKS.values(), plots=False, echo=False,
                 show_reference=False)
    cells = list(csv.DictReader(io.StringIO((tmp_path / "out" / "in1k.csv").read_text())))
    top1 = {c["data"]: (float(c["value"]), c["n"]) for c in cells if c["metric"] == "top1"}
    assert top1 == {f"{DATA} · {roots[0]}": (0.0, "1"), f"{DATA} · {roots[1]}": (75.0, "1"),
                    f"{DATA} · {roots[2]}": (80.0, "2")}
    # one root: the label stays as it was
    same = record("in1k_linear", "mae", {"top1": 10.0, "top5": 90.0}, dataset={**IN1K_DATA, "root": roots[0]})
    build_tables(write_runs(tmp_path / "one", {"a": runs["r0"], "b": same}), tmp_path / "out1", TASKS.values(),
                 plots=False, echo=False, show_reference=False)
    cells = list(csv.DictReader(io.StringIO((tmp_path / "out1" / "in1k.csv").read_text())))
    assert {(c["data"], float(c["value"]), c["n"]) for c in cells if c["metric"] == "top1"} == {(DATA, 5.0, "2")}


# ---- other methods' checkpoints (mae_core.formats): named by method and size, beside the paper's rows of the method
def method_record(task, fmt, method, arch, top1, features=None, kind=None):
    rec = record(task, "mae", {"top1": top1, "top5": 90.0}, arch=arch)
    rec["init"] = {"kind": kind or fmt, "ckpt": f"ckpts/{fmt}.pth", "sha256": "b" * 64, "format": fmt,
                   "method": method, "features": features or {"option": "paper", "rule": "cls", "width": 384}}
    return rec


def _rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| ")]


def test_other_methods_rows_are_named_by_method_and_size_beside_their_reference_rows(tmp_path):
    method = {"option": "method", "rule": "cls_last4_avg", "width": 1920}
    runs = {"moco": method_record("in1k_finetune", "moco_v3", "MoCo v3", "vit_base_patch16", 60.0),
            "dino": method_record("in1k_finetune", "dino", "DINO", "vit_base_patch16", 61.0),
            "beit": method_record("in1k_finetune", "timm_beit", "BEiT", "vit_base_patch16", 62.0, kind="beit"),
            "own": method_record("in1k_finetune", "dino", "DINO", "vit_w128_d2_h2_patch8", 30.0),
            "dv2": method_record("in1k_linear", "dinov2", "DINOv2", "vit_small_patch14", 70.0),
            "dv2m": method_record("in1k_linear", "dinov2", "DINOv2", "vit_small_patch14", 72.0, features=method),
            "mocolin": method_record("in1k_linear", "moco_v3", "MoCo v3", "vit_base_patch16", 50.0),
            "mae": record("in1k_finetune", "mae", {"top1": 64.0, "top5": 90.0}, arch="vit_base_patch16")}
    det = method_record("coco_det", "moco_v3", "MoCo v3", "vit_base_patch16", 0.0)
    det["metrics"] = {"bbox_AP": 20.0, "segm_AP": 18.0}
    det["dataset"] = {"name": "synthetic-coco", "root": "/data/coco", "split": "val2017", "subset": None, "images": 50}
    runs["det"] = det
    out = tmp_path / "out"
    build_tables(write_runs(tmp_path / "r", runs), out, TASKS.values(), plots=False, echo=False)
    rows = [r[:3] for r in _rows((out / "in1k.md").read_text())[1:]]  # (protocol, method, source)
    fine = [(m, s) for p, m, s in rows if p == "fine-tune"]
    names = [m for m, _ in fine]
    # each measured row right after the last reference row of its method (Table 3: DINO, MoCo v3, BEiT in order)
    at = {m: i for i, m in enumerate(names)}
    assert at["DINO ViT-B/16"] == at["DINO IN1K"] + 1 and at["DINO vit_w128_d2_h2_patch8"] == at["DINO IN1K"] + 2
    assert at["MoCo v3 ViT-B/16"] == max(i for i, m in enumerate(names) if m == "MoCo v3 IN1K") + 1
    assert at["BEiT ViT-B/16"] == max(i for i, m in enumerate(names) if m.startswith("BEiT IN1K")) + 1
    assert dict(fine)["MoCo v3 ViT-B/16"] == "measured" and names.index("MAE") > at["BEiT ViT-B/16"]
    linear = [m for p, m, _ in rows if p == "linear probe"]
    # no reference row of DINOv2, nor of MoCo v3's linear probe (its 77.6 is Figure 9's K=0): after the reference
    # rows; the run that read DINOv2's own features is a row of its own
    assert linear == ["BEiT IN1K+DALLE", "MAE IN1K", "DINOv2 ViT-S/14", "DINOv2 ViT-S/14 (cls_last4_avg features)",
                      "MoCo v3 ViT-B/16"]
    coco = [r[0] for r in _rows((out / "coco.md").read_text())[1:]]  # Table 4: supervised, MoCo v3, BEiT, MAE
    assert coco.index("MoCo v3 ViT-B/16") == coco.index("MoCo v3 IN1K") + 1
    runs_csv = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    by_file = {r["file"]: r for r in runs_csv}
    assert by_file["dv2m/result.json"]["features"] == "method:cls_last4_avg"
    assert by_file["dv2/result.json"]["features"] == "paper" and by_file["dv2/result.json"]["format"] == "dinov2"
    assert by_file["mae/result.json"]["init_method"] == "mae" and by_file["beit/result.json"]["init_method"] == "BEiT"
    from results.frame import load_frame
    from results.regression import measured_values
    keys = set(measured_values(load_frame(tmp_path / "r")).index)  # never pooled in the regression keys either
    assert {"in1k_linear/dinov2/vit_small_patch14/top1",
            "in1k_linear/features=cls_last4_avg/dinov2/vit_small_patch14/top1"} <= keys
