"""Recipe schemas: every recipe of every family resolves to the very dict it resolved to before the schemas (a snapshot
taken at commit 097d6b4, `tests/reference/recipes_097d6b4.json`: keys, order, types and values; the tools' recipes
named by their name there, not by the absolute path they were loaded from then); each schema's defaults are the old
base recipe and it declares every key the recipes held; a bad key or value, in a file or in --set, is one line."""
import ast
import json
import typing
from pathlib import Path

import pytest

import tools
from benchmarks.config import RECIPE_ROOT, available, load_recipe, recipe_schema
from benchmarks.recipe_schema import Checker, CpuLinear, Features, defaults
from mae_core.errors import MaeBenchError

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = json.loads((REPO / "tests" / "reference" / "recipes_097d6b4.json").read_text())
FAMILIES = sorted(p.name for p in RECIPE_ROOT.iterdir() if p.is_dir() and p.name != "__pycache__")
# keys added since the snapshot, with their defaults: (families, dotted key, default)
ADDED = [(("in1k_finetune", "in1k_linear", "in1k_partial", "knn"), "model.features", "paper"),  # issue 20 item 5
         (("in1k_finetune", "in1k_linear", "in1k_partial", "knn", "coco_det", "ade20k_seg"), "model.num_heads", None),
         (("sweep",), "scales.ci", ...)]  # the sweeps' ci scale (issue 22 item 3); ... = any value
TOOL_FAMILIES = sorted(p.name for p in tools.RECIPES.iterdir() if p.is_dir() and p.name != "__pycache__")


def _literal(x):
    """A resolved recipe as the snapshot writes it: plain dicts, tuples and lists kept apart, floats as repr."""
    if isinstance(x, dict):
        return {str(k): _literal(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_literal(v) for v in x)
    return x


def _without_added(key: str, resolved: dict) -> dict:
    """`resolved` less the keys added since the snapshot, each asserted present with its default."""
    family = key.rsplit("/", 1)[0]
    for families, dotted, default in ADDED:
        if family in families:
            *path, last = dotted.split(".")
            node = resolved
            for part in path:
                node = node[part]
            value = node.pop(last)
            assert default is ... or value == default, (key, dotted)
    return resolved


def _load(key: str, overrides=None):
    family, name = key.rsplit("/", 1)
    if family.startswith("tools/"):
        return tools.load_recipe(family.removeprefix("tools/"), name, overrides)
    return load_recipe(family, name, overrides)


def test_the_snapshot_names_every_recipe():
    names = {f"{f}/{n}" for f in FAMILIES for n in available(f)}
    names |= {f"tools/{f}/{n}" for f in TOOL_FAMILIES for n in available(str(tools.RECIPES / f))}
    assert names == set(SNAPSHOT)


@pytest.mark.parametrize("key", sorted(SNAPSHOT))
def test_every_recipe_resolves_as_before(key):
    assert repr(_literal(_without_added(key, _load(key).to_dict()))) == SNAPSHOT[key]


# ---- the schema is the one declaration: its defaults are the old base recipes, it holds every key they held ----
def _schema(key: str):
    family = key.rsplit("/", 1)[0]
    return recipe_schema(str(tools.RECIPES / family.removeprefix("tools/")) if family.startswith("tools/") else family)


def _dotted(node: dict, prefix=""):
    for k, v in node.items():
        yield prefix + k, v
        if isinstance(v, dict):
            yield from _dotted(v, f"{prefix}{k}.")


@pytest.mark.parametrize("key", sorted(k for k in SNAPSHOT if k.endswith("/base")))
def test_each_schema_default_is_the_old_base_value(key):
    old = ast.literal_eval(SNAPSHOT[key])
    del old["recipe_name"]
    assert repr(_literal(_without_added(key, defaults(_schema(key))))) == repr(old)
    Checker(_schema(key), "defaults").recipe(defaults(_schema(key)))  # every default in its own range


def test_the_schemas_declare_every_key_the_recipes_held():
    """Every dotted key of every recipe at 097d6b4 is a key of its family's schema (or lies in an open section)."""
    for key, text in SNAPSHOT.items():
        checker = Checker(_schema(key), key)
        for name, _ in _dotted(ast.literal_eval(text)):
            if not name.startswith("_") and name != "recipe_name":  # a file's own helpers, the loader's key
                kind = checker.schema
                for part in name.split("."):
                    kind = checker._field(kind, part, name, key)


def test_the_torch_free_choices_match_the_library():
    from mae_core.cpu_linear import CHOICES
    from mae_core.feature_rules import CHOICES as FEATURES
    from mae_core.vit import GLOBAL_POOLS
    assert typing.get_args(CpuLinear) == CHOICES
    assert typing.get_args(Features) == tuple(FEATURES)
    pool = typing.get_type_hints(recipe_schema("pretrain").__dataclass_fields__["monitor"].type)["knn_global_pool"]
    assert typing.get_args(pool) == GLOBAL_POOLS


# ---- bad keys and values: one line naming the key, before any work, from a recipe file and from --set ----------
BAD = [  # family, dotted key, value, the phrase(s) of the one line
    ("pretrain", "model.nope", 1, "unknown recipe key 'model.nope': model has arch, img_size, mask_ratio"),
    ("pretrain", "modle.arch", "x", ("unknown recipe key 'modle", "': the recipe has model, data, optim")),
    ("pretrain", "schedule.epochs", "ten", "recipe value schedule.epochs='ten' is invalid: it must be an integer >= 1"),
    ("pretrain", "schedule.epochs", 2.0, "schedule.epochs=2.0 is invalid: it must be an integer >= 1"),
    ("pretrain", "schedule.epochs", 0, "schedule.epochs=0 is invalid: it must be an integer >= 1"),
    ("pretrain", "schedule.epochs", None, "schedule.epochs=None is invalid: it must be an integer >= 1"),
    ("pretrain", "model.norm_pix_loss", 1, "model.norm_pix_loss=1 is invalid: it must be True or False"),
    ("pretrain", "model.img_size", True, "model.img_size=True is invalid: it must be an integer in [1, 8192]"),
    ("pretrain", "model.mask_ratio", 1.0, "model.mask_ratio=1.0 is invalid: it must be a number in (0, 1)"),
    ("pretrain", "model.mask_ratio", float("nan"), "model.mask_ratio=nan is invalid: it must be a number in (0, 1)"),
    ("pretrain", "data.crop_scale", (0.2,), "it must be a list or tuple of 2: a number, a number"),
    ("pretrain", "data.subset", -5, "data.subset=-5 is invalid: it must be an integer >= 1 or None"),
    ("pretrain", "runtime.cpu_linear", "mkl", "it must be one of auto, onednn, aten"),
    ("pretrain", "monitor.knn_data", "", "monitor.knn_data='' is invalid: it must be a path (a non-empty string) or None"),
    ("knn", "knn.temperature", 0, "knn.temperature=0 is invalid: it must be a number > 0"),
    ("coco_det", "model.rpn.pre_nms_test", 0, "model.rpn.pre_nms_test=0 is invalid: it must be an integer >= 1"),
    ("coco_det", "model.anchor_sizes", (32, 0), "it must be a list or tuple, each an integer >= 1"),
    ("in1k_partial", "linear_probe.optim.nope", 1, "unknown recipe key 'linear_probe.optim.nope': linear_probe.optim "
                                                   "has name, blr"),
    ("in1k_partial", "linear_probe.protocol", "x", "unknown recipe key 'linear_probe.protocol': linear_probe has model"),
    ("in1k_partial", "linear_probe.optim.blr", -1, "linear_probe.optim.blr=-1 is invalid: it must be a number >= 0"),
    ("suite", "steps.knn.recpe", "smoke", "unknown recipe key 'steps.knn.recpe': steps.knn has recipe, sets"),
    ("suite", "pretrain.sets", "x", "pretrain.sets='x' is invalid: it must be a dict"),
    ("suite", "inits", "mae", "inits='mae' is invalid: it must be a list or tuple, each a string"),
    ("tables", "decimals", 11, "decimals=11 is invalid: it must be an integer in [0, 10]"),
]


def _nested(dotted: str, value) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


@pytest.mark.parametrize("family, key, value, phrase", BAD, ids=[f"{b[0]}:{b[1]}={b[2]!r}" for b in BAD])
def test_a_bad_key_or_value_is_one_line_from_a_file_and_from_set(family, key, value, phrase, tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in _nested(key, value).items()).replace("nan", "float('nan')"))
    with pytest.raises(MaeBenchError) as file_error:
        load_recipe(family, str(path))
    with pytest.raises(MaeBenchError) as set_error:
        load_recipe(family, "base", {key: value})
    for error, origin in ((file_error, f"{path}: "), (set_error, "--set: ")):
        line = str(error.value)
        phrases = phrase if isinstance(phrase, tuple) else (phrase,)
        assert line.startswith(origin) and all(p in line for p in phrases) and "\n" not in line, line


def test_a_section_set_whole_is_refused_and_open_sections_take_new_keys():
    with pytest.raises(MaeBenchError, match=r"--set knn=None: knn is a section \(k, temperature\); set one of its keys"):
        load_recipe("knn", "base", {"knn": None})
    assert load_recipe("knn", "base", {"knn": {"k": 5}}).knn.to_dict() == {"k": 5, "temperature": 0.07}
    with pytest.raises(MaeBenchError, match="unknown recipe key 'model.arch.size': model.arch is not a section"):
        load_recipe("pretrain", "base", {"model.arch.size": 1})
    suite = load_recipe("suite", "tiny", {"steps.toy.recipe": "smoke", "pretrain.sets": {"schedule.epochs": 2}})
    assert suite.steps.toy.recipe == "smoke" and suite.pretrain.sets["schedule.epochs"] == 2  # merged, as mmengine does
    assert load_recipe("pretrain", "smoke", {"data.crop_scale": [0.3, 1.0]}).data.crop_scale == [0.3, 1.0]


def test_a_bad_recipe_file_stops_the_command_before_any_work(tmp_path, capsys):
    from benchmarks.cli import main
    (tmp_path / "bad.py").write_text("model = dict(mask_ratio=0.75, decoder_dpeth=2)\n")
    code = main(["pretrain", "--recipe", str(tmp_path / "bad.py"), "--data", str(tmp_path / "none"),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mae-bench: error:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "unknown recipe key 'model.decoder_dpeth': model has arch" in lines[0] and "decoder_depth" in lines[0]
    assert not (tmp_path / "run").exists()


# ---- a task's own recipe folder: its schema.py beside its recipes -------------------------------------------------
def test_a_recipe_folder_of_ones_own_declares_its_schema(tmp_path):
    folders = {name: tmp_path / "recipes" / name for name in ("none", "broken", "mine")}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "smoke.py").write_text("steps = 3\n")
    with pytest.raises(MaeBenchError, match="has no schema.py"):
        load_recipe(str(folders["none"]), "smoke")
    (folders["broken"] / "schema.py").write_text("class Recipe(:\n")
    with pytest.raises(MaeBenchError, match=r"cannot read recipe schema .*schema.py: SyntaxError"):
        load_recipe(str(folders["broken"]), "smoke")
    family = str(folders["mine"])
    (folders["mine"] / "schema.py").write_text(
        "from benchmarks.recipe_schema import Positive, section\n\n\n"
        "@section\nclass Optim:\n    lr: float = 0.1\n\n\n"
        "@section\nclass Recipe:\n    steps: Positive = 10\n    optim: Optim\n")
    assert available(family) == ["base", "smoke"]
    assert load_recipe(family, "smoke", ["optim.lr=0.5"]).to_dict() == {
        "steps": 3, "optim": {"lr": 0.5}, "recipe_name": "smoke"}
    assert load_recipe(family, "base").to_dict() == {"steps": 10, "optim": {"lr": 0.1}, "recipe_name": "base"}
    with pytest.raises(MaeBenchError, match="recipe value steps=0 is invalid: it must be an integer >= 1"):
        load_recipe(family, "smoke", ["steps=0"])
    with pytest.raises(MaeBenchError, match="no recipe 'paper' for mine; available: base, smoke"):
        load_recipe(family, "paper")
