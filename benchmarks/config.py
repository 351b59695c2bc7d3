"""Recipes: mmengine Config files under `benchmarks/recipes/<family>/<name>.py`,
picked by `--recipe NAME` (or a path), adjusted by `--set key=value`."""
import ast
from pathlib import Path

from mmengine.config import Config

from mae_core.atomic import atomic_write
from mae_core.errors import MaeBenchError

from .recipe_checks import check_ranges, check_types

RECIPE_ROOT = Path(__file__).parent / "recipes"


def available(family: str) -> list[str]:
    """Recipe names of a family (`pretrain`, `in1k_linear`, ...), `base` excluded."""
    return sorted(p.stem for p in (RECIPE_ROOT / family).glob("*.py") if not p.stem.startswith("_"))


def recipe_path(family: str, name: str) -> Path:
    if name.endswith(".py") or "/" in name:
        path = Path(name)
    else:
        path = RECIPE_ROOT / family / f"{name}.py"
    if not path.is_file():
        raise MaeBenchError(f"no recipe {name!r} for {family}; available: {', '.join(available(family)) or 'none'}")
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


def _check_key(cfg: dict, dotted: str, value=None) -> None:
    node = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the recipe"
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "nothing (not a section)"
            raise MaeBenchError(f"unknown recipe key {dotted!r}: {where} has {known}")
        node = node[part]
    if isinstance(node, dict) and not isinstance(value, dict):  # `--set knn=None` would remove the whole section
        raise MaeBenchError(f"--set {dotted}={value!r}: {dotted} is a section ({', '.join(sorted(node))}); set one of "
                            f"its keys, e.g. {dotted}.{next(iter(node), 'key')}=...")


def load_recipe(family: str, name: str, overrides: list[str] | dict | None = None) -> Config:
    """Load a recipe, apply overrides (each key must already exist), return the Config."""
    path = recipe_path(family, name)
    try:
        cfg = Config.fromfile(str(path))
    except Exception as e:  # mmengine raises many kinds for a broken file
        raise MaeBenchError(f"cannot read recipe {path}: {e}".splitlines()[0]) from None
    sets = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    plain = cfg.to_dict()
    for key, value in sets.items():
        _check_key(plain, key, value)
    check_types(plain, sets)
    cfg.merge_from_dict(sets)
    check_ranges(cfg.to_dict())
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
