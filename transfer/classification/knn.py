"""Weighted k-NN classification on frozen features (DINO's `eval_knn.py`, Caron et al. 2021).

Features are L2-normalised; each validation image takes its k most cosine-similar training images and
each neighbour votes for its class with weight exp(similarity / T); classes are ranked by their summed
votes (top-1, and top-5 over min(5, k) ranks as DINO). Training-free: the only cost is one forward pass.

Ties, which DINO leaves to `torch.topk` / `torch.sort` (whose order for equal values is unspecified and
differs between devices), are broken by index: among equally similar training images at the k-th place
the lower index is taken, and among classes with equal votes the lower class id ranks first.
"""
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mae_core.distributed import DistInfo
from mae_core.errors import MaeBenchError
from mae_core.runner import run
from results.evidence import PREDICTIONS_FILE
from transfer.encoder import init_encoder

from .data import ImageFolderDataset, check_same_classes, check_splits, eval_transform, resolve_root
from .evaluate import write_val_predictions
from .features import extract_features


def nearest(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices of each row's k largest values, ties at the k-th value going to the lower index
    (the first k of a stable descending sort); ascending index order within a row."""
    kth = sim.topk(k, dim=1).values[:, -1:]
    above = sim > kth
    tied = sim == kth
    need = k - above.sum(1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(1) <= need))
    return chosen.nonzero()[:, 1].view(len(sim), k)


def knn_scores(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor, k: int,
               temperature: float, num_classes: int, chunk: int | None = None) -> torch.Tensor:
    """Summed class votes (test images x classes, float64) of DINO's weighted k-NN rule."""
    train = F.normalize(train_feats.float(), dim=1, p=2)
    test = F.normalize(test_feats.float(), dim=1, p=2)
    chunk = chunk or max(1, 2 ** 24 // max(len(train), 1))  # about 64 MB of similarities at a time
    out = []
    for i in range(0, len(test), chunk):
        sim = test[i:i + chunk] @ train.T
        idx = nearest(sim, k)
        weights = (sim.gather(1, idx).double() / temperature).exp()
        votes = torch.zeros(len(sim), num_classes, dtype=torch.float64, device=sim.device)
        out.append(votes.scatter_add_(1, train_labels.to(sim.device)[idx], weights))
    return torch.cat(out)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int, temperature: float,
                 num_classes: int, chunk: int | None = None, ranked_out: list | None = None) -> dict:
    """{"top1", "top5"} in percent; top-5 counts the first min(5, k) ranked classes, as DINO. `ranked_out`, when
    given, gets the top-5 ranked class ids per test image (-1 past min(5, k, classes): what top-5 counted)."""
    scores = knn_scores(train_feats, train_labels, test_feats, k, temperature, num_classes, chunk)
    ranked = scores.sort(dim=1, descending=True, stable=True).indices.cpu()
    correct = ranked == test_labels.view(-1, 1).cpu()
    n = max(len(test_labels), 1)
    if ranked_out is not None:
        top = torch.full((len(ranked), 5), -1, dtype=torch.int64)
        top[:, :min(5, k, num_classes)] = ranked[:, :min(5, k, num_classes)]
        ranked_out.append(top)
    return {"top1": 100.0 * correct[:, :1].sum().item() / n,
            "top5": 100.0 * correct[:, :min(5, k, num_classes)].sum().item() / n}


def check_k(k, n_train: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_train:
        raise MaeBenchError(f"knn.k must be an integer in [1, {n_train}] (the number of training images), got {k!r}")


def run_knn(cfg: dict, *, init: str, arch: str | None, data: str, out: str, resume: str | None = None) -> dict:
    """Extract features of train/ and val/ with the frozen encoder and score val/ by k-NN over train/."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise MaeBenchError("knn runs in one process (start it without torchrun)")
    return run(cfg, lambda dist: _knn(cfg, init, arch, data, out, dist))  # trains nothing


def _knn(cfg: dict, init: str, arch: str | None, data: str, out: str, dist: DistInfo) -> dict:
    data_cfg, model_cfg, knn = cfg["data"], cfg["model"], cfg["knn"]
    root, name = resolve_root(data)
    size = model_cfg["img_size"]
    transform = eval_transform(size, data_cfg["crop_pct"])  # no augmentation for either split, as DINO
    sets = {split: ImageFolderDataset(root, split, transform, subset=data_cfg[subset],
                                      subset_mode=data_cfg["subset_mode"], strict=data_cfg["strict"], img_size=size)
            for split, subset in (("train", "subset"), ("val", "val_subset"))}
    check_same_classes(sets["train"], sets["val"])
    check_k(knn["k"], len(sets["train"]))
    split_facts = check_splits(sets["train"], sets["val"], out)
    model, info = init_encoder(init, arch=arch, img_size=size, num_classes=0, global_pool=model_cfg["global_pool"],
                               features=model_cfg.get("features", "paper"), probe="knn",
                               num_heads=model_cfg.get("num_heads"))
    model.to(dist.device)
    loaders = {split: DataLoader(ds, batch_size=cfg["schedule"]["batch_size"], num_workers=data_cfg["num_workers"],
                                 pin_memory=dist.device.startswith("cuda")) for split, ds in sets.items()}
    tr_x, tr_y, tr_bad = extract_features(model, loaders["train"], dist.device)
    read, ranked = [], []
    va_x, va_y, va_bad = extract_features(model, loaders["val"], dist.device, read)
    check_k(knn["k"], len(tr_y))
    n_cls = sets["train"].num_classes
    metrics = knn_accuracy(tr_x.to(dist.device), tr_y, va_x.to(dist.device), va_y, knn["k"],
                           float(knn["temperature"]), n_cls, ranked_out=ranked)
    val_index = torch.arange(len(sets["val"]))[torch.cat(read)]  # one process: it alone writes
    write_val_predictions(Path(out) / PREDICTIONS_FILE, sets["val"], torch.cat(
        [val_index.view(-1, 1), va_y.view(-1, 1), ranked[0]], 1))
    print(f"knn: {info['kind']} {info['arch']}, k={knn['k']}, T={knn['temperature']}, {len(tr_y)} train / "
          f"{len(va_y)} val images ({n_cls} classes, {root}): top1 {metrics['top1']:.2f} top5 {metrics['top5']:.2f}")
    return {"metrics": metrics, "init": info, "arch": info["arch"], "device": dist.device,
            "dataset": {"name": name, "root": str(root), "split": "val", "subset": data_cfg["subset"],
                        "num_classes": n_cls, "train_images": len(tr_y), "val_images": len(va_y),
                        "skipped_samples": tr_bad + va_bad, **split_facts}}
