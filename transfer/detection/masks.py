"""Instance masks as detectron2 keeps them for Mask R-CNN training: polygons transformed exactly (flip,
resize, crop with shapely as fvcore's CropTransform does), tight boxes recomputed from them, and hard
targets rasterised per RoI (PolygonMasks.crop_and_resize). RLE annotations stay bitmaps (BitMasks)."""
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import roi_align


def flip_polygons(parts: list[np.ndarray], width: int) -> list[np.ndarray]:
    """Horizontal flip of flat [x0, y0, x1, y1, ...] parts (fvcore HFlipTransform: x -> width - x)."""
    out = [p.copy() for p in parts]
    for p in out:
        p[0::2] = width - p[0::2]
    return out


def scale_polygons(parts: list[np.ndarray], sx: float, sy: float) -> list[np.ndarray]:
    """x * sx, y * sy (fvcore ResizeTransform: new_w / w and new_h / h)."""
    out = [p.copy() for p in parts]
    for p in out:
        p[0::2] *= sx
        p[1::2] *= sy
    return out


def crop_polygons(parts: list[np.ndarray], x0: int, y0: int, w: int, h: int) -> list[np.ndarray]:
    """fvcore's CropTransform.apply_polygons: each part made valid (buffer(0)), intersected with the window
    [x0, x0 + w] x [y0, y0 + h], split into its polygon pieces (lines and points dropped; a piece's holes
    are dropped too), then shifted by (-x0, -y0). A part may vanish or become several."""
    from shapely import geometry
    window = geometry.box(x0, y0, x0 + w, y0 + h).buffer(0.0)
    out = []
    for part in parts:
        poly = geometry.Polygon(part.reshape(-1, 2)).buffer(0.0)
        if not poly.is_valid:
            continue
        cut = poly.intersection(window)
        if cut.is_empty:
            continue
        pieces = cut.geoms if isinstance(cut, geometry.base.BaseMultipartGeometry) else [cut]
        for piece in pieces:
            if isinstance(piece, geometry.Polygon) and piece.is_valid:
                xy = np.asarray(piece.exterior.coords, dtype=np.float64)[:-1]  # shapely repeats the first vertex
                out.append((xy - (x0, y0)).reshape(-1))
    return out


def rasterize_in_box(parts: list[np.ndarray], box, size: int) -> torch.Tensor:
    """detectron2's rasterize_polygons_within_box: parts shifted to the box corner, scaled to size x size
    (box sides below 0.1 px count as 0.1), rasterised by pycocotools; bool [size, size]."""
    x0, y0, x1, y1 = (float(v) for v in box)
    rw, rh = size / max(x1 - x0, 0.1), size / max(y1 - y0, 0.1)
    polys = []
    for p in parts:
        q = p.astype(np.float64).copy()
        q[0::2] = (q[0::2] - x0) * rw
        q[1::2] = (q[1::2] - y0) * rh
        polys.append(q.tolist())
    if not polys:
        return torch.zeros(size, size, dtype=torch.bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, size, size))
    return torch.from_numpy(mask_utils.decode(rle).astype(bool))


class InstanceMasks:
    """One image's instance masks: each is a list of polygon parts (flat float arrays, image pixels) or,
    for an RLE annotation, a bitmap (uint8 tensor [H, W]). Lives in the target dict under "masks"."""

    def __init__(self, masks: list):
        self.masks = list(masks)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, keep: torch.Tensor) -> "InstanceMasks":
        idx = torch.as_tensor(keep)
        idx = torch.nonzero(idx).flatten() if idx.dtype == torch.bool else idx.flatten()
        return InstanceMasks([self.masks[i] for i in idx.tolist()])

    def bounding_boxes(self) -> torch.Tensor:
        """Tight xyxy boxes [N, 4]: polygons by their extreme vertices (PolygonMasks.get_bounding_boxes),
        bitmaps by their pixels (BitMasks: [x_min, y_min, x_max + 1, y_max + 1]); zeros when empty."""
        boxes = torch.zeros(len(self), 4, dtype=torch.float32)
        for i, m in enumerate(self.masks):
            if torch.is_tensor(m):
                ys, xs = torch.nonzero(m, as_tuple=True)
                if len(xs):
                    boxes[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            elif m:
                xy = np.concatenate([p.reshape(-1, 2) for p in m]).astype(np.float32)
                boxes[i] = torch.from_numpy(np.concatenate([xy.min(0), xy.max(0)]))
        return boxes

    def nonempty(self) -> torch.Tensor:
        return torch.tensor([bool(m.any()) if torch.is_tensor(m) else len(m) > 0 for m in self.masks], dtype=torch.bool)

    def crop_and_resize(self, index: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
        """Hard targets [R, size, size] (bool, on CPU) of instance index[r] inside boxes[r]: polygons
        rasterised in the box (PolygonMasks.crop_and_resize), bitmaps RoI-aligned with aligned=True and
        thresholded at 0.5 (BitMasks.crop_and_resize)."""
        index, boxes = index.cpu().tolist(), boxes.detach().float().cpu()
        out = torch.zeros(len(index), size, size, dtype=torch.bool)
        bitmap_rows = []
        for r, i in enumerate(index):
            if torch.is_tensor(self.masks[i]):
                bitmap_rows.append(r)
            else:
                out[r] = rasterize_in_box(self.masks[i], boxes[r].tolist(), size)
        if bitmap_rows:
            ids = sorted({index[r] for r in bitmap_rows})
            slot = {i: k for k, i in enumerate(ids)}
            bitmaps = torch.stack([self.masks[i] for i in ids])[:, None].float()
            rows = torch.tensor(bitmap_rows)
            rois = torch.cat([torch.tensor([[float(slot[index[r]])] for r in bitmap_rows]), boxes[rows]], dim=1)
            out[rows] = roi_align(bitmaps, rois, (size, size), 1.0, sampling_ratio=0, aligned=True)[:, 0] >= 0.5
        return out
