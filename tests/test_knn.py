"""The `knn` task: DINO's weighted k-NN rule (eval_knn.py) on frozen features, checked against a NumPy
implementation written here from its published semantics, and the task end to end."""
import numpy as np
import pytest
import torch

from benchmarks.cli import main
from results.record import read_result
from transfer.classification.knn import knn_accuracy, knn_scores


def dino_knn_numpy(train, train_y, test, test_y, k, T, num_classes):
    """DINO's rule: L2-normalise, cosine similarity, the k most similar training images (ties: lower index,
    as a stable descending sort), votes exp(sim / T) summed per class (in training-index order), classes ranked
    by votes (ties: lower class id); top-5 over the first min(5, k) ranks. Returns (votes, top1 %, top5 %)."""
    train = np.asarray(train, np.float64)
    test = np.asarray(test, np.float64)
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    sim = test @ train.T
    votes = np.zeros((len(test), num_classes))
    for i in range(len(test)):
        for j in sorted(np.argsort(-sim[i], kind="stable")[:k]):
            votes[i, train_y[j]] += np.exp(sim[i, j] / T)
    ranked = np.argsort(-votes, axis=1, kind="stable")
    hits = ranked == np.asarray(test_y)[:, None]
    n = len(test)
    return votes, 100.0 * int(hits[:, 0].sum()) / n, 100.0 * int(hits[:, :min(5, k, num_classes)].any(1).sum()) / n


@pytest.mark.parametrize("k", [1, 3, 5, 20, 60])
def test_knn_equals_numpy_dino_rule_on_random_features(k):
    g = torch.Generator().manual_seed(k)
    n_cls, dim = 7, 16
    centres = torch.randn(n_cls, dim, generator=g)
    train_y = torch.randint(0, n_cls, (60,), generator=g)
    test_y = torch.randint(0, n_cls, (40,), generator=g)
    train = centres[train_y] + 1.5 * torch.randn(60, dim, generator=g)
    test = centres[test_y] + 1.5 * torch.randn(40, dim, generator=g)
    votes, top1, top5 = dino_knn_numpy(train.numpy(), train_y.numpy(), test.numpy(), test_y.numpy(), k, 0.07, n_cls)
    ours = knn_scores(train, train_y, test, k, 0.07, n_cls, chunk=7)  # chunks that do not divide the test set
    np.testing.assert_allclose(ours.numpy(), votes, rtol=1e-4)
    got = knn_accuracy(train, train_y, test, test_y, k, 0.07, n_cls, chunk=7)
    assert (got["top1"], got["top5"]) == (top1, top5)
    assert 100 / n_cls < top1 < 100 and (k > 1 or top5 == top1)  # not a degenerate case


@pytest.mark.parametrize("k", [1, 4, 12, 25])
def test_knn_ties_go_to_the_lower_index_as_a_stable_sort(k):
    """One-hot features: similarities are exactly 0 or 1, so many training images tie at the k-th place
    and many classes tie in votes; the chosen neighbours and the class order follow the index rule."""
    g = torch.Generator().manual_seed(100 + k)
    n_cls, dim = 6, 8
    train = torch.eye(dim)[torch.randint(0, 4, (40,), generator=g)]
    test = torch.eye(dim)[torch.randint(0, 4, (12,), generator=g)]
    train_y = torch.randint(0, n_cls, (40,), generator=g)
    test_y = torch.randint(0, n_cls, (12,), generator=g)
    votes, top1, top5 = dino_knn_numpy(train.numpy(), train_y.numpy(), test.numpy(), test_y.numpy(), k, 0.07, n_cls)
    ours = knn_scores(train, train_y, test, k, 0.07, n_cls)
    assert np.array_equal(ours.numpy(), votes)
    got = knn_accuracy(train, train_y, test, test_y, k, 0.07, n_cls)
    assert (got["top1"], got["top5"]) == (top1, top5)


def _run(synth_root, out, *extra, ckpt="scratch"):
    return main(["run", "--task", "knn", "--recipe", "smoke", "--ckpt", str(ckpt), "--arch", "vit_tiny_patch16",
                 "--data", str(synth_root), "--out", str(out), "--set", "model.img_size=32",
                 "--set", "schedule.batch_size=8", "--set", "runtime.device='cpu'", *extra])


def test_knn_task_writes_result_and_tables(synth_root, mae_ckpt, tmp_path, capsys):
    assert _run(synth_root, tmp_path / "runs" / "mae", ckpt=mae_ckpt) == 0
    rec = read_result(tmp_path / "runs" / "mae")
    assert rec["task"] == "knn" and rec["protocol"] == "knn" and rec["init"]["kind"] == "mae"
    assert set(rec["metrics"]) == {"top1", "top5"} and 0 <= rec["metrics"]["top1"] <= rec["metrics"]["top5"] <= 100
    assert rec["dataset"]["train_images"] == 24 and rec["dataset"]["val_images"] == 8
    assert rec["recipe"]["knn"] == {"k": 20, "temperature": 0.07}
    assert _run(synth_root, tmp_path / "runs" / "avg", "--set", "model.global_pool='avg'", ckpt=mae_ckpt) == 0
    assert main(["tables", "--results", str(tmp_path / "runs"), "--out", str(tmp_path / "tables")]) == 0
    assert "k-NN" in (tmp_path / "tables" / "knn.md").read_text()
    from benchmarks.tasks import primary_metrics
    from results.regression import make_baseline
    assert "knn/mae/vit_tiny_patch16/top1" in make_baseline([rec], 1.0, primary_metrics())


@pytest.mark.parametrize("sets, message", [
    (["--set", "knn.k=0"], "recipe value knn.k=0 is invalid: it must be an integer >= 1"),
    (["--set", "knn.k=25"], "knn.k must be an integer in [1, 24] (the number of training images), got 25"),
    (["--set", "knn.temperature=0"], "recipe value knn.temperature=0 is invalid"),
])
def test_bad_knn_settings_are_one_line_errors_before_any_work(synth_root, tmp_path, capsys, sets, message):
    assert _run(synth_root, tmp_path / "run", *sets) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "run" / "result.json").exists()
