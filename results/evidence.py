"""Per-image evidence a run writes beside result.json, so a later `mae-bench compare` can re-score it paired.

- classification (in1k_* and knn): `predictions.csv`, one row per scored validation image: `image` (its path
  relative to the split folder), `label`, `pred1`..`pred5` (the top-5 class ids, best first; -1 past the class count);
- segmentation (ade20k_seg): `seg_counts.csv`, one row per (image, class) with pixels in the label or the
  prediction: `image`, `class`, `intersect`, `pred`, `label` (mmsegmentation's per-image areas); their sums over
  images are the run's confusion-matrix diagonal, column and row sums, hence its mIoU / mAcc / aAcc exactly;
- detection (coco_det): detectron2's `coco_instances_results.json` plus `coco_eval.json`: the annotation file
  and the image ids COCOeval scored.

numpy only (no torch, no pandas), written atomically.
"""
import csv
import io
import json
from pathlib import Path

import numpy as np

from mae_core.atomic import write_bytes_atomic
from mae_core.errors import MaeBenchError

PREDICTIONS_FILE = "predictions.csv"
SEG_COUNTS_FILE = "seg_counts.csv"
COCO_EVAL_FILE = "coco_eval.json"
TOPK = 5
PRED_COLUMNS = ["image", "label", *(f"pred{i + 1}" for i in range(TOPK))]
SEG_COLUMNS = ["image", "class", "intersect", "pred", "label"]


def _csv_bytes(header: list[str], rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_predictions(path, images: list[str], labels, topk) -> Path:
    """`images[i]`'s label and top-k class ids (an [n, <=5] integer array), sorted by image."""
    topk = np.asarray(topk, dtype=np.int64).reshape(len(images), -1)
    pad = np.full((len(images), TOPK), -1, dtype=np.int64)
    pad[:, :min(TOPK, topk.shape[1])] = topk[:, :TOPK]
    rows = sorted((img, int(y), *map(int, p)) for img, y, p in zip(images, labels, pad))
    return write_bytes_atomic(path, _csv_bytes(PRED_COLUMNS, rows))


def write_seg_counts(path, images: list[str], rows) -> Path:
    """`rows`: [m, 5] integers (image index into `images`, class, intersect, pred, label), zero rows left out."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
    rows = rows[(rows[:, 3] > 0) | (rows[:, 4] > 0)]
    out = sorted((images[r[0]], *map(int, r[1:])) for r in rows)
    return write_bytes_atomic(path, _csv_bytes(SEG_COLUMNS, out))


def write_coco_eval(path, annotation_file, image_ids) -> Path:
    """What COCOeval scored: the annotation file and the evaluated image ids."""
    text = json.dumps({"annotation_file": str(annotation_file), "image_ids": sorted(int(i) for i in image_ids)})
    return write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def _read_csv(path: Path, header: list[str]) -> list[list[str]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise MaeBenchError(f"{path.name} not found in {path.parent} (runs made before mae-bench wrote per-image "
                            "evidence cannot be compared; rerun them)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MaeBenchError(f"cannot read {path}: {e}") from None
    if not rows or rows[0] != header:
        raise MaeBenchError(f"{path}: expected the columns {','.join(header)}")
    return rows[1:]


def read_predictions(run_dir) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids, labels [n], top-5 [n, 5]) of a classification run, in image order."""
    path = Path(run_dir) / PREDICTIONS_FILE
    rows = _read_csv(path, PRED_COLUMNS)
    try:
        nums = np.array([[int(v) for v in r[1:]] for r in rows], dtype=np.int64).reshape(len(rows), 1 + TOPK)
    except ValueError:
        raise MaeBenchError(f"{path}: label and predictions must be integers") from None
    return [r[0] for r in rows], nums[:, 0], nums[:, 1:]


def read_seg_counts(run_dir, num_classes: int) -> tuple[list[str], np.ndarray]:
    """(image ids, counts [n_images, num_classes, 3] of intersect, pred, label) of a segmentation run."""
    path = Path(run_dir) / SEG_COUNTS_FILE
    rows = _read_csv(path, SEG_COLUMNS)
    images = sorted({r[0] for r in rows})
    where = {img: i for i, img in enumerate(images)}
    counts = np.zeros((len(images), num_classes, 3), dtype=np.int64)
    for r in rows:
        try:
            c, vals = int(r[1]), [int(v) for v in r[2:]]
        except ValueError:
            raise MaeBenchError(f"{path}: class and counts must be integers") from None
        if not 0 <= c < num_classes:
            raise MaeBenchError(f"{path}: class {c} is outside 0..{num_classes - 1}")
        counts[where[r[0]], c] = vals
    return images, counts


def read_coco_eval(run_dir) -> dict:
    path = Path(run_dir) / COCO_EVAL_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MaeBenchError(f"{COCO_EVAL_FILE} not found in {run_dir} (a detection run made before mae-bench "
                            "recorded its evaluated images cannot be compared; rerun it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MaeBenchError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotation_file"), str) \
            or not isinstance(data.get("image_ids"), list):
        raise MaeBenchError(f"{path}: needs 'annotation_file' and 'image_ids'")
    return data
