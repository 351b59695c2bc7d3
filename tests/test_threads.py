"""Threads from the cores really available (affinity, cgroup v2 quota), explicit settings first, one per worker."""
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.cli import main
from mae_core import threads


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A fake /sys/fs/cgroup and /proc/self/cgroup; `set(cores, {cgroup_path: "quota period"}, own=path)`."""
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(threads, "CGROUP_ROOT", root)
    monkeypatch.setattr(threads, "PROC_CGROUP", tmp_path / "proc_self_cgroup")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)

    def set_(cores, limits=None, own="/"):
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cores)))
        (tmp_path / "proc_self_cgroup").write_text(f"0::{own}\n")
        for path, value in (limits or {}).items():
            folder = root / path.strip("/")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "cpu.max").write_text(value + "\n")
    return set_


@pytest.mark.parametrize("cores, limits, own, expected", [
    (3, {}, "/", 3),  # the affinity mask, no cgroup file
    (8, {"/": "max 100000"}, "/", 8),  # no quota
    (8, {"/": "250000 100000"}, "/", 2),  # 2.5 cores of quota: 2 threads
    (2, {"/": "800000 100000"}, "/", 2),  # a quota above the mask: the mask
    (8, {"/a/b": "max 100000", "/a": "300000 100000"}, "/a/b", 3),  # a parent's quota holds too
    (8, {"/a/b": "100000 100000", "/a": "400000 100000"}, "/a/b", 1),  # the tightest one wins
    (8, {"/": "20000 100000"}, "/", 1),  # a fifth of a core: still one thread
])
def test_available_cores(host, cores, limits, own, expected):
    host(cores, limits, own)
    assert threads.available_cores() == expected


def test_without_a_cgroup_v2_line_only_the_mask_counts(host, tmp_path):
    host(5)
    (tmp_path / "proc_self_cgroup").write_text("12:cpu,cpuacct:/docker/x\n")  # cgroup v1 only
    assert threads.cgroup_cpu_limit() is None and threads.available_cores() == 5


def test_configure_threads_sources(host, monkeypatch):
    host(6, {"/": "400000 100000"})
    assert threads.configure_threads() == (4, "available cores") and torch.get_num_threads() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun processes on this node share the 4 cores
    assert threads.configure_threads() == (2, "available cores") and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.configure_threads() == (3, "OMP_NUM_THREADS") and torch.get_num_threads() == 3
    assert threads.configure_threads(requested=1) == (1, "recipe") and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert threads.configure_threads() == (4, "available cores")


def test_cli_sets_threads_at_start_up_for_compute_commands(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(threads, "configure_threads", lambda *a: calls.append(a) or (1, "test"))
    assert main(["run", "--task", "knn", "--ckpt", "scratch", "--arch", "vit_tiny_patch16",
                 "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 1
    assert calls == [()]
    calls.clear()
    main(["tables", "--results", str(tmp_path / "missing"), "--out", str(tmp_path / "t")])
    assert calls == []  # no torch work


class _ThreadCounts(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        cv2.resize(np.zeros((256, 256, 3), np.uint8), (64, 64))  # OpenCV still works in a forked worker
        return torch.tensor(torch.get_num_threads())


def test_data_workers_run_one_torch_thread_each():
    torch.set_num_threads(2)
    cv2.resize(np.zeros((1024, 1024, 3), np.uint8), (512, 512))  # the parent's OpenCV pool exists before the fork
    for init in (threads.worker_init, None):  # torch's own worker loop gives one thread too
        loader = DataLoader(_ThreadCounts(), batch_size=1, num_workers=1, worker_init_fn=init)
        assert [b.item() for b in loader] == [1, 1]
    assert torch.get_num_threads() == 2  # the main process keeps its threads


def test_the_pipelines_loaders_use_worker_init(monkeypatch):
    """The pretraining loader hands worker_init to its DataLoader."""
    import mae_core.data as data
    seen = {}
    monkeypatch.setattr(data, "DataLoader", lambda *a, **k: seen.update(k))
    ds = type("D", (), {"__len__": lambda self: 4, "set_epoch": lambda self, e: None})()
    data.epoch_loader(ds, 0, 2, 0, 1, 0, num_workers=2)
    assert seen["worker_init_fn"] is threads.worker_init
