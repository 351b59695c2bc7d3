"""COCO evaluation: detections in detectron2's `coco_instances_results.json` format and pycocotools' COCOeval."""
import contextlib
import io
import json

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from mae_core.atomic import atomic_write

RESULTS_FILE = "coco_instances_results.json"
# COCOeval.stats order for bbox and segm
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def to_coco_results(output: dict, image_id: int, cat_ids: list[int], mask_threshold: float = 0.5) -> list[dict]:
    """One image's torchvision detections (boxes xyxy, labels 1..K, scores, masks [N, 1, H, W] probabilities)
    as detectron2 writes them: image_id, category_id (label k is cat_ids[k - 1]), bbox xywh, score,
    segmentation RLE (counts as str)."""
    boxes = output["boxes"].detach().float().cpu().numpy()
    scores = output["scores"].detach().float().cpu().tolist()
    labels = output["labels"].cpu().tolist()
    results = []
    masks = None
    if "masks" in output:
        masks = (output["masks"][:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        r = {"image_id": int(image_id), "category_id": int(cat_ids[labels[i] - 1]),
             "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[i])}
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[i]))
            r["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        results.append(r)
    return results


def coco_eval(coco_gt, results: list[dict], img_ids: list[int], iou_types=("bbox", "segm")) -> dict:
    """{bbox_AP, bbox_AP50, ..., segm_APl} in percent from pycocotools' COCOeval over `img_ids`.
    A metric COCOeval cannot define (no ground truth in that size range: -1) is left out; no detections
    at all give 0 for the defined ones."""
    metrics = {}
    for iou_type in iou_types:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
            if results:
                dets = coco_gt.loadRes([dict(r) for r in results])  # loadRes mutates its input
                ev = COCOeval(coco_gt, dets, iou_type)
            else:
                ev = COCOeval(coco_gt, None, iou_type)
            ev.params.imgIds = sorted(img_ids)
            if results:
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
                stats = ev.stats[:6]
            else:
                stats = _empty_stats(coco_gt, img_ids)
        for name, value in zip(STAT_NAMES, stats):
            if value >= 0:
                metrics[f"{iou_type}_{name}"] = float(value) * 100
    return metrics


def _empty_stats(coco_gt, img_ids) -> list[float]:
    """COCOeval's stats when nothing was detected: 0 where some ground truth exists in the size range, else -1."""
    areas = [a["area"] for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=list(img_ids), iscrowd=False))]
    ranges = [(0, 1e10)] * 3 + [(0, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e10)]
    return [0.0 if any(lo <= a < hi for a in areas) else -1.0 for lo, hi in ranges]


def write_results(path, results: list[dict]) -> None:
    """RUN/coco_instances_results.json, written atomically."""
    text = json.dumps(results)
    atomic_write(path, lambda tmp: open(tmp, "w").write(text))


@torch.no_grad()
def predict(model, loader, device: str, cat_ids: list[int], autocast, progress=None) -> tuple[list[dict], list[int], int]:
    """(COCO results, evaluated image ids, unreadable images) for this process's share of `loader`."""
    model.eval()
    results, ids, dropped = [], [], 0
    for images, targets, bad in loader:
        dropped += bad
        if not images:
            continue
        with autocast():
            outputs = model([im.to(device) for im in images])
        for out, t in zip(outputs, targets):
            results.extend(to_coco_results(out, t["image_id"], cat_ids))
            ids.append(int(t["image_id"]))
        if progress is not None:
            progress.update(len(images))
    return results, ids, dropped
