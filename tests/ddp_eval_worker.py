"""A process of the two-process gloo test in test_compare.py (kept apart: each spawned process imports it)."""


def two_rank_eval(rank, port, logits, labels, out):
    """One of two gloo processes: its ShardSampler share (rank, rank + 2, ...) through evaluate_classifier."""
    import torch
    import torch.distributed as tdist
    from mae_core.distributed import DistInfo
    from transfer.classification.evaluate import evaluate_classifier
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        mine = list(range(rank, len(labels), 2))
        batches = [(logits[mine[i:i + 2]], labels[mine[i:i + 2]], torch.tensor(mine[i:i + 2]))
                   for i in range(0, len(mine), 2)]
        res = evaluate_classifier(lambda b: b, batches, DistInfo(rank, 2), keep=True)
        if rank == 0:
            torch.save({"rows": res["rows"], "top1": res["top1"]}, out)
    finally:
        tdist.destroy_process_group()
