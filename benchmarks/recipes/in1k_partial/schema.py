"""Partial fine-tuning recipes (paper Figure 9): the fine-tuning keys and defaults (in1k_finetune/schema.py) with
only the last `blocks` blocks (+ final norm + head) trained; blocks=0 is the linear probe (`linear_probe`)."""
from typing import Annotated

from benchmarks.recipe_schema import NonNegative, Overlay, Positive, section, with_defaults
from benchmarks.recipes.in1k_finetune.schema import Recipe as Finetune
from benchmarks.recipes.in1k_finetune.schema import Schedule as FinetuneSchedule


@section
class Schedule(FinetuneSchedule):
    # ((K, epochs), ...): the epochs of the K listed (others: schedule.epochs), e.g. ((1, 200), (4, 100)). The paper
    # fine-tunes each K for the best of 50, 100 and 200 epochs (fewer blocks need longer; appendix A.1).
    epochs_per_blocks: tuple[tuple[NonNegative, Positive], ...] = ()


@section
class Recipe(with_defaults(Finetune, protocol="partial", blocks=1)):
    schedule: Schedule
    # Paper Figure 9: "tuning 0 blocks is linear probing". With blocks=0 these sections replace the fine-tuning
    # ones, so K = 0 runs the in1k_linear protocol (LARS, BN head on the cls token, crop + flip, no Mixup); a test
    # keeps them equal to the in1k_linear recipe of the same name. Override them as linear_probe.<key>.
    linear_probe: Annotated[dict, Overlay()] = dict(
        model=dict(global_pool="token", drop_path=0.0),
        data=dict(augment="linear", auto_augment=None, reprob=0.0, crop_scale=(0.08, 1.0)),
        mixup=dict(mixup=0.0, cutmix=0.0, smoothing=0.0),
        optim=dict(name="lars", blr=0.1, weight_decay=0.0, layer_decay=1.0, min_lr=0.0),
        schedule=dict(epochs=90, warmup_epochs=10, batch_size=512),
    )
    blocks_part: str = "all"  # all | mlp (only the MLP sub-block of the tuned blocks; paper Fig. 9 "MLP only")
