"""Recipes: a family's schema (`benchmarks/recipes/<family>/schema.py`: every key's type, range and default, the
`base` recipe) under the mmengine Config files that override it (`<name>.py`, picked by `--recipe NAME` or a path),
adjusted by `--set key=value`."""
import ast
import importlib
import importlib.util
import sys
from functools import cache
from pathlib import Path

from mmengine.config import Config

from mae_core.atomic import atomic_write
from mae_core.errors import MaeBenchError

from .recipe_schema import Checker, defaults

RECIPE_ROOT = Path(__file__).parent / "recipes"


def available(family: str) -> list[str]:
    """Recipe names of a family (`pretrain`, ... or a recipe folder), `base` (the schema's defaults) too."""
    names = {p.stem for p in (RECIPE_ROOT / family).glob("*.py") if not p.stem.startswith("_") and p.stem != "schema"}
    return sorted(names | {"base"})


@cache
def recipe_schema(family: str) -> type:
    """The family's `Recipe` dataclass, from its folder's schema.py."""
    folder = RECIPE_ROOT / family
    path = folder / "schema.py"
    if not path.is_file():
        raise MaeBenchError(f"recipe folder {folder} has no schema.py (its keys, their types, ranges and defaults)")
    if folder.resolve().parent == RECIPE_ROOT.resolve():
        return importlib.import_module(f"benchmarks.recipes.{folder.name}.schema").Recipe
    name = f"recipe_schema_{abs(hash(str(path.resolve())))}"  # a task's own recipe folder
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        return module.Recipe
    except Exception as e:  # a user's schema: a syntax error, a raise, no `Recipe`
        raise MaeBenchError(f"cannot read recipe schema {path}: {type(e).__name__}: {e}".splitlines()[0]) from None


def recipe_path(family: str, name: str) -> Path | None:
    """The recipe file of `name` (None for `base`: the schema's defaults alone)."""
    if name.endswith(".py") or "/" in name:
        path = Path(name)
    else:
        path = RECIPE_ROOT / family / f"{name}.py"
        if name == "base" and not path.is_file():
            return None
    if not path.is_file():
        raise MaeBenchError(f"no recipe {name!r} for {Path(family).name}; available: {', '.join(available(family))}")
    return path


def parse_value(text: str):
    """`--set` values are Python literals when they parse as one (1e-4, True, (0.2, 1.0), None), else strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MaeBenchError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def load_recipe(family: str, name: str, overrides: list[str] | dict | None = None) -> Config:
    """The schema's defaults, the recipe file over them, then the overrides: every key and value checked against
    the schema before anything else happens."""
    schema = recipe_schema(family)
    cfg = Config(defaults(schema))
    path = recipe_path(family, name)
    if path is not None:
        try:
            own = Config.fromfile(str(path)).to_dict()
        except Exception as e:  # mmengine raises many kinds for a broken file
            raise MaeBenchError(f"cannot read recipe {path}: {e}".splitlines()[0]) from None
        Checker(schema, str(path)).recipe(own)
        cfg.merge_from_dict(own)
    sets = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    Checker(schema, "--set").overrides(sets)
    cfg.merge_from_dict(sets)
    cfg.recipe_name = name
    return cfg


def resolved(cfg: Config) -> dict:
    """The recipe as a plain dict (what result.json and checkpoints store)."""
    return _plain(cfg.to_dict())


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def recipe_text(cfg: Config) -> str:
    """The resolved recipe as `recipe.py` holds it."""
    return Config(resolved(cfg)).pretty_text


def save_recipe(cfg: Config, run_dir: str | Path) -> Path:
    """Write the resolved recipe as `RUN/recipe.py` (loadable again with --recipe)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "recipe.py"
    text = recipe_text(cfg)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
