"""COCO instances (real COCO 2017 or the synthetic set) for Mask R-CNN: validated json, counted
skips, large-scale jitter for training and plain images for evaluation."""
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from mae_core.data import deterministic_subset
from mae_core.errors import MaeBenchError
from mae_core.images import IMAGENET_MEAN, open_rgb
from transfer.data_root import DataLayout

from results.coco_file import load_coco

from .masks import InstanceMasks, crop_polygons, flip_polygons, scale_polygons

PAD_VALUE = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)  # zero after normalisation

COCO_LAYOUT = DataLayout("coco", markers=("annotations",), under=("coco",),
                         missing="{data} is not a COCO root (no annotations/ folder) nor a synthetic set (no coco/)")
resolve_root = COCO_LAYOUT.resolve  # (root with annotations/, train2017/, val2017/; dataset name)


def _usable_annotation(a: dict, width: int, height: int, cat_ids: set) -> dict | None:
    """The annotation as a training target (polygon parts of fewer than 3 points dropped, as detectron2
    does), or None when it is malformed: unknown category, bad box, no usable mask."""
    bbox = a.get("bbox")
    if a.get("category_id") not in cat_ids or not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in bbox) or bbox[2] <= 0 or bbox[3] <= 0:
        return None
    seg = a.get("segmentation")
    if isinstance(seg, list):
        parts = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        return {**a, "segmentation": parts} if parts else None
    ok = isinstance(seg, dict) and "counts" in seg and "size" in seg and list(seg["size"]) == [height, width]
    return a if ok else None


def subset_ids(ids: list[int], n: int | None) -> list[int]:
    """`n` of the sorted image ids, drawn as every task's --subset is (`deterministic_subset`)."""
    ids = sorted(ids)
    return [ids[i] for i in deterministic_subset(len(ids), n)]


class CocoInstances(torch.utils.data.Dataset):
    """One split of a COCO root. Training images keep their non-crowd instances (crowd regions only
    matter to COCOeval, as in detectron2); images without any, missing files and malformed
    annotations are skipped and counted in `skipped`, or are an error when `strict`."""

    def __init__(self, root: Path, split: str, *, train: bool, img_size: int, subset: int | None = None,
                 strict: bool = False, seed: int = 0, scale_range=(0.1, 2.0), flip: bool = True):
        self.root, self.split, self.train = Path(root), split, train
        self.img_dir = self.root / split
        self.ann_file = self.root / "annotations" / f"instances_{split}.json"
        self.coco = load_coco(self.ann_file)
        if not self.img_dir.is_dir():
            raise MaeBenchError(f"image folder not found: {self.img_dir}")
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_of = {c: i + 1 for i, c in enumerate(self.cat_ids)}  # 0 is torchvision's background
        self.img_size, self.strict, self.seed = img_size, strict, seed
        self.scale_range, self.flip, self.epoch = tuple(scale_range), flip, 0
        self.skipped = {"missing_file": 0, "malformed_annotation": 0, "no_instances": 0}
        present = set(os.listdir(self.img_dir))
        self.ids, self.anns = [], {}
        for img_id in subset_ids(list(self.coco.imgs), subset):
            info = self.coco.imgs[img_id]
            name = os.path.normpath(info["file_name"])
            if os.path.isabs(name) or name == ".." or name.startswith(".." + os.sep):  # confined to the split
                self._skip("malformed_annotation", f"image file name {info['file_name']!r} leaves {self.img_dir}")
                continue
            if info["file_name"] not in present and not (self.img_dir / info["file_name"]).is_file():
                self._skip("missing_file", f"image file {self.img_dir / info['file_name']} is missing")
                continue
            anns = self._annotations(img_id, info)
            if train and not anns:
                self.skipped["no_instances"] += 1  # nothing to learn from (detectron2 filters these too)
                continue
            self.ids.append(img_id)
            self.anns[img_id] = anns
        if not self.ids:
            raise MaeBenchError(f"no usable images in {self.img_dir} ({self._skip_text()})")
        self.issues = self._issues()
        if not train and not any(not a.get("iscrowd", 0) for i in self.ids for a in self.coco.imgToAnns.get(i, [])):
            raise MaeBenchError(f"COCO {split} has no non-crowd annotation on its {len(self.ids)} images: nothing "
                                "to score (COCOeval ignores crowd regions)")

    def _issues(self) -> dict:
        """Counts of annotations pycocotools scores without complaint but that cannot be right: those whose
        image_id names no image (never scored) and boxes entirely outside their image (never matched)."""
        orphans = sum(1 for a in self.coco.dataset["annotations"] if a["image_id"] not in self.coco.imgs)
        outside = 0
        for img_id in self.ids:
            info = self.coco.imgs[img_id]
            w, h = info.get("width"), info.get("height")
            if not isinstance(w, (int, float)) or not isinstance(h, (int, float)):
                continue
            for a in self.coco.imgToAnns.get(img_id, []):
                b = a.get("bbox")
                if (isinstance(b, (list, tuple)) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)
                        and (b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0)):
                    outside += 1
        return {"annotations_without_image": orphans, "boxes_outside_image": outside}

    def issue_text(self) -> str:
        return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.issues.items() if v)

    def _skip(self, kind: str, message: str) -> None:
        if self.strict:
            raise MaeBenchError(f"{message} (without --strict it would be skipped)")
        self.skipped[kind] += 1

    def _skip_text(self) -> str:
        return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.skipped.items() if v) or "none skipped"

    def _annotations(self, img_id: int, info: dict) -> list[dict]:
        out = []
        for a in self.coco.imgToAnns.get(img_id, []):
            if a.get("iscrowd", 0):
                continue
            usable = None
            if "width" in info and "height" in info:
                usable = _usable_annotation(a, info["width"], info["height"], set(self.label_of))
            if usable is None:
                self._skip("malformed_annotation", f"annotation {a.get('id')} of image {img_id} is malformed")
                continue
            out.append(usable)
        return out

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws come from (seed, epoch, index): a resumed run sees the same crops."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        """(image float [3, H, W] in 0-1, target) or None for an unreadable image (counted by the collate).
        A training target holds boxes, labels and `masks` (InstanceMasks) after detectron2's LSJ."""
        img_id = self.ids[index]
        info = self.coco.imgs[img_id]
        try:
            img = open_rgb(self.img_dir / info["file_name"], exif_transpose=True)
        except MaeBenchError:
            if self.strict:
                raise
            return None
        image = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
        target = {"image_id": img_id}
        if not self.train:
            return TF.to_dtype(image, torch.float32, scale=True), target
        h, w = image.shape[-2:]
        if (info["height"], info["width"]) != (h, w):  # detectron2's check_image_size (after EXIF orientation)
            if self.strict:
                raise MaeBenchError(f"image {self.img_dir / info['file_name']} is {w} x {h} but its annotation "
                                    f"says {info['width']} x {info['height']}")
            return None
        anns = self.anns[img_id]
        masks = [[np.asarray(p, dtype=np.float64) for p in a["segmentation"]] if isinstance(a["segmentation"], list)
                 else torch.from_numpy(self.coco.annToMask(a)) for a in anns]
        image, masks = self._jitter(image, masks, np.random.default_rng([self.seed, self.epoch, index]))
        masks = InstanceMasks(masks)
        boxes = masks.bounding_boxes()  # detectron2's recompute_boxes=True: tight boxes of the cropped masks
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        keep = ((boxes[:, 2] - boxes[:, 0]) > 1e-5) & ((boxes[:, 3] - boxes[:, 1]) > 1e-5) & masks.nonempty()
        target.update(boxes=boxes[keep], labels=labels[keep], masks=masks[keep])
        return TF.to_dtype(image, torch.float32, scale=True), target

    def _jitter(self, image: torch.Tensor, masks: list, rng: np.random.Generator):
        """detectron2's LSJ (RandomFlip, ResizeScale, FixedSizeCrop with pad=False) on the image and on each
        instance's polygons (exactly) or bitmap (nearest), then padding of the image to img_size x img_size
        at the bottom and right (the backbone's square_pad)."""
        size = self.img_size
        h, w = image.shape[-2:]
        if self.flip and rng.random() < 0.5:
            image = TF.horizontal_flip(image)
            masks = [TF.horizontal_flip(m) if torch.is_tensor(m) else flip_polygons(m, w) for m in masks]
        scale = rng.uniform(*self.scale_range)
        r = min(size * scale / h, size * scale / w)
        nh, nw = max(1, int(round(h * r))), max(1, int(round(w * r)))
        image = TF.resize(image, [nh, nw], antialias=True)
        masks = [TF.resize(m[None], [nh, nw], interpolation=TF.InterpolationMode.NEAREST_EXACT)[0] if torch.is_tensor(m)
                 else scale_polygons(m, nw / w, nh / h) for m in masks]
        u = rng.uniform()  # one draw for both offsets, as FixedSizeCrop
        top, left = int(round(max(0, nh - size) * u)), int(round(max(0, nw - size) * u))
        image = image[:, top:top + size, left:left + size]
        masks = [m[top:top + size, left:left + size] if torch.is_tensor(m) else crop_polygons(m, left, top, size, size)
                 for m in masks]
        ch, cw = image.shape[-2:]
        image = TF.pad(image, [0, 0, size - cw, size - ch], fill=list(PAD_VALUE))
        masks = [F.pad(m, (0, size - cw, 0, size - ch)) if torch.is_tensor(m) else m for m in masks]
        return image, masks


def collate(batch):
    """(images, targets, number dropped): lists for torchvision's detectors, unreadable images (None) left out."""
    good = [s for s in batch if s is not None]
    return [s[0] for s in good], [s[1] for s in good], len(batch) - len(good)
