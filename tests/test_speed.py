import pytest

from tools import load_recipe, speed


def _smoke(**sets):
    base = dict(steps=1, warmup=0, decoder_depth=1)
    base.update(sets)
    return load_recipe("bench", "smoke", base)


def test_smoke_recipe_is_small():
    cfg = load_recipe("bench", "smoke")
    assert (cfg.arch, cfg.img_size, cfg.batch_size, cfg.steps, cfg.warmup) == ("vit_tiny_patch16", 32, 2, 2, 1)
    assert cfg.table2_archs == ["vit_tiny_patch16"] and cfg.out is None


def test_run_bench_rows(capsys):
    res = speed.run_bench(_smoke(compare_hf=False), progress=False)
    assert [r["model"] for r in res["main"]] == ["ours (mae_core)"]
    assert res["main"][0]["params"] > 0 and "ratio" not in res
    rows = [(r["arch"], r["decoder_depth"], r["mask_tokens_in_encoder"]) for r in res["table2"]]
    assert rows == [("vit_tiny_patch16", d, t) for t in (True, False) for d in (2, 1)]
    for row in res["main"] + res["table2"]:
        assert row["img_s"] > 0 and len(row["runs"]) == 1
    for row in res["table2"]:
        assert row["speedup"] > 0 and row["paper_speedup"] is None
    assert res["table2"][0]["speedup"] == 1.0
    assert {"cpu", "cores", "torch", "threads", "device"} <= set(res["machine"])
    text = speed.render(res)
    assert "Table 2" in text and "vit_tiny_patch16" in text
    cpu = res["machine"]
    device = "cpu" if cpu["cpu_family"] is None else f"cpu-f{cpu['cpu_family']}m{cpu['cpu_model']}"
    assert speed.section_key(res) == f"{device}/vit_tiny_patch16/b2/32px/fp32"


def test_run_bench_without_table2():
    res = speed.run_bench(_smoke(compare_hf=False, table2=False), progress=False)
    assert res["table2"] == [] and len(res["main"]) == 1


def test_fp16_on_cpu_is_refused():
    from mae_core.errors import MaeBenchError
    with pytest.raises(MaeBenchError, match="fp16"):
        speed.run_bench(_smoke(precision="fp16"), progress=False)


def test_paper_numbers():
    assert speed.PAPER_T2[("vit_large_patch16", 8)] == 2.8
    assert speed.PAPER_T2[("vit_large_patch16", 1)] == 3.7
    assert speed.PAPER_T2[("vit_huge_patch14", 1)] == 4.1


def test_write_section_replaces_atomically(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Speed benchmarks\n\nnotes kept\n")
    speed.write_section(path, "cpu/a", "first")
    speed.write_section(path, "cpu/b", "other")
    speed.write_section(path, "cpu/a", "second")
    text = path.read_text()
    assert text.startswith("# Speed benchmarks\n\nnotes kept\n")
    assert "second" in text and "first" not in text and "other" in text
    assert text.count("<!-- bench:cpu/a -->") == 1 and text.count("<!-- /bench:cpu/a -->") == 1
    assert text.index("bench:cpu/a") < text.index("bench:cpu/b")
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


def test_write_section_creates_file(tmp_path):
    path = tmp_path / "sub" / "R.md"
    speed.write_section(path, "k", "body")
    assert "## k\n\nbody\n" in path.read_text()


def test_write_section_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "R.md"
    speed.write_section(path, "k", "old")
    monkeypatch.setattr(speed.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        speed.write_section(path, "k", "new")
    assert "old" in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["R.md"]


def test_hf_has_our_parameter_count():
    pytest.importorskip("transformers")
    cfg = _smoke()
    ours = speed.build_ours(dict(cfg.to_dict()), "vit_tiny_patch16")
    hf, attn = speed.build_hf(ours, 0.75, "sdpa")
    assert speed.n_params(hf) == speed.n_params(ours)
    assert hf.config.hidden_size == 192 and hf.config.decoder_num_hidden_layers == 1
    assert hf.config.norm_pix_loss is True and attn in ("sdpa", "eager")


def test_hf_row_when_installed():
    pytest.importorskip("transformers")
    res = speed.run_bench(_smoke(table2=False), progress=False)
    ours, hf = res["main"]
    assert hf["model"].startswith("HF ViTMAEForPreTraining") and hf["img_s"] > 0
    assert ours["params"] == hf["params"] and res["ratio"] > 0


def test_without_transformers_the_comparison_is_skipped(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    res = speed.run_bench(_smoke(table2=False), progress=False)
    assert len(res["main"]) == 1 and "transformers" in res["hf_note"]
    assert "note: transformers" in speed.render(res)


def test_bench_records_cpu_spread_load_and_the_linear_choice(monkeypatch):
    from mae_core import cpu_linear
    monkeypatch.setattr(cpu_linear, "time_path", lambda path, ops: {"aten": 1.0, "onednn": 2.0}[path])
    loads = iter([0.1, 2.0, 2.2])
    monkeypatch.setattr(speed, "load_average", lambda: next(loads))
    res = speed.run_bench(_smoke(compare_hf=False, table2=False, repeats=2, threads=2), progress=False)
    assert res["load"] == [0.1, 2.0, 2.2] and res["load_warning"] is None  # only our own 2 threads
    assert {"cpu_family", "cpu_model"} <= set(res["machine"]) and res["machine"]["threads"] == 2
    assert res["settings"]["cpu_linear"] == "aten" and res["cpu_linear"]["source"] == "measured"
    assert speed.section_key(res).endswith("/vit_tiny_patch16/b2/32px/fp32")  # auto's choice: no /aten-linear
    text = speed.render(res)
    runs = res["main"][0]["runs"]
    assert f"{min(runs):.2f}-{max(runs):.2f}" in text and "min-max" in text
    assert "aten (auto: Linear passes timed at start-up, aten 1000 ms, onednn 2000 ms)" in text
    assert "0.10, 2.00, 2.20" in text and "warning" not in text
    res["load"], res["load_warning"] = [1.9, 2.4], speed.load_warning([1.9, 2.4], 2)
    assert "**warning**" in speed.render(res) and "under load" in speed.render(res)


def test_each_cpu_model_gets_its_own_section():
    res = {"settings": {"arch": "vit_base_patch16", "batch_size": 8, "img_size": 224, "precision": "fp32",
                        "cpu_linear": "aten"},
           "machine": {"device": "cpu", "cpu_family": 26, "cpu_model": 2}, "cpu_linear": {"setting": "aten"}}
    assert speed.section_key(res) == "cpu-f26m2/vit_base_patch16/b8/224px/fp32/aten-linear"
    res["machine"].update(cpu_family=25, cpu_model=17)
    res["cpu_linear"]["setting"] = "onednn"
    assert speed.section_key(res) == "cpu-f25m17/vit_base_patch16/b8/224px/fp32/onednn-linear"
    res["cpu_linear"]["setting"] = "auto"  # the default path: the plain key
    assert speed.section_key(res) == "cpu-f25m17/vit_base_patch16/b8/224px/fp32"
    res["machine"] = {"device": "cuda:0", "cpu_family": 25, "cpu_model": 17}
    assert speed.section_key(res) == "cuda/vit_base_patch16/b8/224px/fp32"
