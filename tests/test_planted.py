"""The planted-regression benchmark's pieces: each plant really breaks what it names, and only while applied;
a plant's folder keeps the clean run's unaffected steps; false alarms are counted against the other seeds."""
import json

import numpy as np
import torch

from tools import planted
from results.record import write_result
from tests.test_tables import record


def test_encoder_plants_change_the_loaded_weights_only_inside_the_patch(tmp_path):
    from mae_core.checkpoint import save_checkpoint
    from mae_core.models import create_mae
    from transfer import encoder
    mae = create_mae("vit_micro_patch8", img_size=32, decoder_depth=1, decoder_embed_dim=32, decoder_num_heads=2)
    path = tmp_path / "mae.pth"
    save_checkpoint(path, mae.state_dict(), config=mae.config)
    clean, _ = encoder.init_encoder(str(path), arch=None, img_size=32, num_classes=0)
    w = "blocks.0.attn.qkv.weight"
    with planted.PLANTS["random_encoder"].patch():
        rand, _ = encoder.init_encoder(str(path), arch=None, img_size=32, num_classes=0)
    with planted.PLANTS["pos_embed_zeroed"].patch():
        zero, _ = encoder.init_encoder(str(path), arch=None, img_size=32, num_classes=0)
    again, _ = encoder.init_encoder(str(path), arch=None, img_size=32, num_classes=0)
    assert not torch.equal(rand.state_dict()[w], clean.state_dict()[w])
    assert zero.pos_embed.abs().sum() == 0 and torch.equal(zero.state_dict()[w], clean.state_dict()[w])
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), clean.state_dict().values()))


def test_data_plants_shift_categories_and_leave_labels_unreduced():
    from transfer.detection import evaluate
    from transfer.segmentation import data
    out = {"boxes": torch.tensor([[0.0, 0, 4, 4]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    assert evaluate.to_coco_results(out, 7, [3, 5, 9])[0]["category_id"] == 3
    with planted.PLANTS["coco_category_shift"].patch():
        assert evaluate.to_coco_results(out, 7, [3, 5, 9])[0]["category_id"] == 5
    label = np.array([[0, 1, 11, 255]], np.uint8)
    with planted.PLANTS["ade_reduce_zero_label_off"].patch():
        assert data.reduce_zero_label(label).tolist() == [[0, 1, 255, 255]]
    assert data.reduce_zero_label(label).tolist() == [[255, 0, 10, 255]]


def test_loss_on_visible_plant_averages_over_the_visible_patches_only_inside_the_patch():
    from mae_core.models import create_mae
    torch.manual_seed(0)
    mae = create_mae("vit_micro_patch8", img_size=32, decoder_depth=1, decoder_embed_dim=32, decoder_num_heads=2)
    imgs, pred = torch.randn(2, 3, 32, 32), torch.randn(2, 16, 8 * 8 * 3)
    mask = (torch.rand(2, 16) < 0.75).float()
    per_patch = ((pred - mae.target(imgs)) ** 2).mean(-1)
    visible, masked = (per_patch * (1 - mask)).sum() / (1 - mask).sum(), (per_patch * mask).sum() / mask.sum()
    with planted.PLANTS["mae_loss_on_visible"].patch():
        assert torch.allclose(mae.forward_loss(imgs, pred, mask), visible)
    assert torch.allclose(mae.forward_loss(imgs, pred, mask), masked)


def test_mask_ratio_zero_is_refused_before_any_work():
    import pytest
    from benchmarks.config import load_recipe
    from mae_core.errors import MaeBenchError
    with pytest.raises(MaeBenchError, match="mask_ratio"):
        load_recipe("pretrain", "smoke", {"model.mask_ratio": 0.0})


def test_inverted_layer_decay_plant_gives_the_stem_the_full_lr_and_the_head_the_least():
    from transfer.classification.optim import param_groups_lrd
    from transfer.encoder import build_vit
    vit = build_vit("vit_micro_patch8", 32, 8, "avg", 0.0)
    depth = len(vit.blocks)

    def scales(groups):
        ids = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
        return ids[id(vit.patch_embed.proj.weight)], ids[id(vit.head.weight)]
    assert scales(param_groups_lrd(vit, 0.05, layer_decay=0.5)) == (0.5 ** (depth + 1), 1.0)
    with planted.PLANTS["layer_decay_inverted"].patch():
        assert scales(param_groups_lrd(vit, 0.05, layer_decay=0.5)) == (1.0, 0.5 ** (depth + 1))
    assert scales(param_groups_lrd(vit, 0.05, layer_decay=0.5)) == (0.5 ** (depth + 1), 1.0)


def test_a_plant_folder_keeps_only_unaffected_steps_and_false_alarms_use_the_other_seeds(tmp_path):
    clean = tmp_path / "s0"
    for task in ("in1k_linear", "coco_det"):
        for init in ("mae", "scratch"):
            (clean / "runs" / task / init).mkdir(parents=True)
            (clean / "runs" / task / init / "result.json").write_text("{}")
    (clean / "pretrain").mkdir()
    (clean / "tables").mkdir()
    planted._copy_clean(clean, tmp_path / "p", planted.PLANTS["coco_category_shift"])
    kept = sorted(str(p.relative_to(tmp_path / "p")) for p in (tmp_path / "p").rglob("result.json"))
    assert kept == ["runs/in1k_linear/mae/result.json", "runs/in1k_linear/scratch/result.json"]
    assert (tmp_path / "p" / "pretrain").is_dir() and not (tmp_path / "p" / "tables").exists()
    planted._copy_clean(clean, tmp_path / "v", planted.PLANTS["mae_loss_on_visible"])  # re-pretrains: MAE runs go too
    kept = sorted(str(p.relative_to(tmp_path / "v")) for p in (tmp_path / "v").rglob("result.json"))
    assert kept == ["runs/coco_det/scratch/result.json", "runs/in1k_linear/scratch/result.json"]
    assert not (tmp_path / "v" / "pretrain").exists()
    seeds = [tmp_path / f"seed{i}" for i in range(3)]
    for seed, value in zip(seeds, (40.0, 41.0, 20.0)):  # the third seed is far below the other two
        write_result(seed / "runs" / "in1k_linear" / "mae", record("in1k_linear", "mae", {"top1": value}))
    rows = planted.false_alarms(seeds, [], tmp_path / "unused.json")
    assert [bool(r["alarms"]) for r in rows] == [False, False, True]
    # an extra run is checked on the inits it ran: a baseline row of another init is not an alarm
    base = tmp_path / "base.json"
    base.write_text(json.dumps({f"in1k_linear/{i}/vit_tiny_patch16/top1": {"metric": "top1", "value": 40.0,
                                "tolerance": 2.0} for i in ("mae", "supervised")}))
    rows = planted.false_alarms([], [seeds[0] / "runs", seeds[2] / "runs"], base)
    assert [r["alarms"] for r in rows] == [[], ["in1k_linear/mae/vit_tiny_patch16/top1"]]
