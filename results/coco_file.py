"""A COCO instances file read into pycocotools' index, validated (torch-free: the paired re-scoring reads it too)."""
import contextlib
import io
import json
from pathlib import Path

from pycocotools.coco import COCO

from mae_core.errors import MaeBenchError


def load_coco(path: Path) -> COCO:
    """pycocotools' COCO index of an instances json; a missing or malformed file is one clear error."""
    if not path.is_file():
        raise MaeBenchError(f"COCO annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MaeBenchError(f"cannot read COCO annotations {path}: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise MaeBenchError(f"{path} is not a COCO instances file (needs lists 'images', 'annotations', 'categories')")
    bad = next((i for i, im in enumerate(data["images"]) if not isinstance(im, dict)
                or not {"id", "file_name"} <= im.keys() or type(im["id"]) is not int
                or not isinstance(im["file_name"], str)), None)
    if bad is not None:
        raise MaeBenchError(f"{path}: images[{bad}] needs an integer 'id' and a string 'file_name'")
    first = {}
    for i, im in enumerate(data["images"]):
        if im["id"] in first:  # pycocotools keeps one image per id: the other is never scored, its boxes merged
            raise MaeBenchError(f"{path}: images[{i}] repeats the id {im['id']} of images[{first[im['id']]}]; "
                                "pycocotools indexes one image per id, so one of them would be scored with the "
                                "other's annotations and the other not at all")
        first[im["id"]] = i
    if not data["categories"] or not all(isinstance(c, dict) and "id" in c for c in data["categories"]):
        raise MaeBenchError(f"{path}: 'categories' is empty or an entry lacks 'id'")
    data["annotations"] = [a for a in data["annotations"] if isinstance(a, dict) and "image_id" in a]
    for a in data["annotations"]:  # loadRes and COCOeval need these
        a.setdefault("iscrowd", 0)
        a.setdefault("id", None)
    ids = [a["id"] for a in data["annotations"]]
    if None in ids or len(set(ids)) != len(ids):  # COCOeval matches by annotation id
        for i, a in enumerate(data["annotations"]):
            a["id"] = i + 1
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco
