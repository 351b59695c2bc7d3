"""runtime.cpu_linear: auto picks the faster path, explicit settings force one, resume reuses the stored choice."""
import json

import pytest
import torch

from benchmarks.cli import main
from mae_core import cpu_linear
from mae_core.checkpoint import read_checkpoint
from mae_core.errors import MaeBenchError
from mae_core.onednn_linear import OneDnnLinear, available
from tests.conftest import tiny_mae, tiny_pretrain_args

needs_onednn = pytest.mark.skipif(not available(), reason="this torch has no oneDNN linear")


def _fake_timer(monkeypatch, seconds: dict, calls: list):
    """time_path returns `seconds[path]` and records each call."""
    def fake(path, operands):
        calls.append(path)
        return seconds[path]
    monkeypatch.setattr(cpu_linear, "time_path", fake)


def _kinds(model):
    return {type(m) for m in model.modules() if isinstance(m, torch.nn.Linear)}


@needs_onednn
@pytest.mark.parametrize("seconds, expected", [
    ({"aten": 1.0, "onednn": 0.5}, "onednn"),
    ({"aten": 0.5, "onednn": 1.0}, "aten"),
    ({"aten": 1.0, "onednn": 0.97}, "aten"),  # within the 5 % margin: the stock path
])
def test_auto_picks_the_faster_path(monkeypatch, seconds, expected):
    calls = []
    _fake_timer(monkeypatch, seconds, calls)
    model, runtime = tiny_mae(), {"cpu_linear": "auto"}
    record = cpu_linear.select_cpu_linear(model, runtime, "cpu")
    assert runtime["cpu_linear"] == record["choice"] == expected and record["source"] == "measured"
    assert record["seconds"] == seconds
    # a warm-up pass per path, then REPEATS interleaved passes of each
    assert calls == ["aten", "onednn"] * (1 + cpu_linear.REPEATS)
    assert _kinds(model) == ({OneDnnLinear} if expected == "onednn" else {torch.nn.Linear})


def test_measure_times_each_linear_shape_once_weighted_by_count(monkeypatch):
    seen = []

    def fake(path, operands):
        seen.append(sorted((count, tuple(w.shape), b is not None) for count, x, w, b, g in operands))
        return 1.0
    monkeypatch.setattr(cpu_linear, "time_path", fake)
    model = tiny_mae()
    cpu_linear.measure(model, repeats=1)
    expected = {}
    for m in model.modules():
        if type(m) is torch.nn.Linear:
            key = (tuple(m.weight.shape), m.bias is not None)
            expected[key] = expected.get(key, 0) + 1
    assert seen[0] == sorted((n, shape, bias) for (shape, bias), n in expected.items())


@needs_onednn
def test_time_path_runs_forward_and_backward_on_both_paths():
    ops = cpu_linear._operands({(8, 4, True): 3}, rows=5)
    for path in ("aten", "onednn"):
        assert cpu_linear.time_path(path, ops) > 0
    x, w = ops[0][1], ops[0][2]
    assert x.grad is not None and w.grad is not None


@pytest.mark.parametrize("setting", ["onednn", "aten"])
def test_explicit_setting_forces_the_path_without_timing(monkeypatch, setting):
    monkeypatch.setattr(cpu_linear, "time_path", lambda *a: pytest.fail("an explicit setting must not measure"))
    model, runtime = tiny_mae(), {"cpu_linear": setting}
    record = cpu_linear.select_cpu_linear(model, runtime, "cpu")
    want = setting if available() else "aten"
    assert runtime["cpu_linear"] == record["choice"] == want
    assert _kinds(model) == ({OneDnnLinear} if want == "onednn" else {torch.nn.Linear})


def test_gpu_runs_do_not_measure(monkeypatch):
    monkeypatch.setattr(cpu_linear, "time_path", lambda *a: pytest.fail("no timing on a GPU run"))
    model, runtime = tiny_mae(), {"cpu_linear": "auto"}
    record = cpu_linear.select_cpu_linear(model, runtime, "cuda:0")
    assert runtime["cpu_linear"] == "aten" and _kinds(model) == {torch.nn.Linear}
    assert "no effect" in record["source"]


def test_unknown_setting_is_an_input_error():
    with pytest.raises(MaeBenchError, match="cpu_linear"):
        cpu_linear.select_cpu_linear(tiny_mae(), {"cpu_linear": "mkl"}, "cpu")


def test_recipe_refuses_an_unknown_setting(synth_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = tiny_pretrain_args(synth_root, out, epochs=1, extra=["runtime.cpu_linear=mkl"])
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cpu_linear" in err[0] and not out.exists()


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_onednn
def test_auto_is_resolved_once_and_a_resume_reuses_it(synth_root, tmp_path, monkeypatch):
    calls = []
    _fake_timer(monkeypatch, {"aten": 1.0, "onednn": 0.5}, calls)
    data = synth_root / "imagenet" / "train"
    auto = ["runtime.cpu_linear=auto"]
    # the reference: an unbroken 2-epoch run on the path auto will choose
    assert main(tiny_pretrain_args(data, tmp_path / "full", epochs=2, extra=["runtime.cpu_linear=onednn"])) == 0
    part = tmp_path / "part"
    assert main(tiny_pretrain_args(data, part, epochs=2, extra=auto)) == 0
    assert calls  # measured once for the fresh run
    stored = read_checkpoint(part / "checkpoint-0.pth")["config"]["recipe"]["runtime"]["cpu_linear"]
    assert stored == "onednn"
    (part / "checkpoint-last.pth").unlink()
    (part / "checkpoint-0.pth").rename(part / "checkpoint-last.pth")
    # the machine now times aten faster: a resumed run must not re-measure or switch
    calls.clear()
    _fake_timer(monkeypatch, {"aten": 0.1, "onednn": 1.0}, calls)
    assert main([*tiny_pretrain_args(data, part, epochs=2, extra=auto), "--resume", "auto"]) == 0
    assert calls == []
    linear = [r for r in _records(part / "log.jsonl") if r["type"] == "cpu_linear"]
    assert [(r["source"], r["choice"]) for r in linear] == [("measured", "onednn"), ("resumed checkpoint", "onednn")]
    a, b = (read_checkpoint(p / "checkpoint-last.pth") for p in (tmp_path / "full", part))
    assert b["config"]["recipe"]["runtime"]["cpu_linear"] == "onednn"
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_stored_choice_reads_only_our_records(tmp_path):
    from mae_core.checkpoint import save_checkpoint
    path = tmp_path / "c.pth"
    save_checkpoint(path, {"w": torch.zeros(1)}, config={"recipe": {"runtime": {"cpu_linear": "aten"}}})
    assert cpu_linear.stored_choice(tmp_path, str(path)) == "aten"
    assert cpu_linear.stored_choice(tmp_path, "auto") is None  # no checkpoint-last.pth yet
    assert cpu_linear.stored_choice(tmp_path, None) is None
    save_checkpoint(tmp_path / "checkpoint-last.pth", {"w": torch.zeros(1)}, config={"arch": "x"})
    assert cpu_linear.stored_choice(tmp_path, "auto") is None


def _rank_main(rank, init_file, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    calls = []
    # rank 0's clock favours oneDNN, rank 1's would favour aten: both must take rank 0's choice
    seconds = {"aten": 1.0, "onednn": 0.5} if rank == 0 else {"aten": 0.5, "onednn": 1.0}
    cpu_linear.time_path = lambda path, ops: calls.append(path) or seconds[path]
    runtime = {"cpu_linear": "auto"}
    record = cpu_linear.select_cpu_linear(tiny_mae(), runtime, "cpu")
    (out_dir / f"{rank}.json").write_text(json.dumps({"choice": runtime["cpu_linear"], "timed": len(calls),
                                                      "source": record["source"]}))
    dist.destroy_process_group()


@needs_onednn
def test_every_rank_takes_rank_0s_choice(tmp_path):
    import torch.multiprocessing as tmp
    tmp.spawn(_rank_main, args=(str(tmp_path / "init"), tmp_path), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]
    assert [g["choice"] for g in got] == ["onednn", "onednn"] and all(g["source"] == "measured" for g in got)
    assert got[0]["timed"] > 0 and got[1]["timed"] == 0  # only rank 0 measures
