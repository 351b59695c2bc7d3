"""Recipes: every recipe of every family resolves to the very dict it resolved to before the schemas (a snapshot
taken at commit 097d6b4, `tests/reference/recipes_097d6b4.json`: keys, order, types and values; the tools' recipes
named by their name there, not by the absolute path they were loaded from then)."""
import json
from pathlib import Path

import pytest

import tools
from benchmarks.config import RECIPE_ROOT, available, load_recipe

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = json.loads((REPO / "tests" / "reference" / "recipes_097d6b4.json").read_text())
FAMILIES = sorted(p.name for p in RECIPE_ROOT.iterdir() if p.is_dir() and p.name != "__pycache__")
TOOL_FAMILIES = sorted(p.name for p in tools.RECIPES.iterdir() if p.is_dir() and p.name != "__pycache__")


def _literal(x):
    """A resolved recipe as the snapshot writes it: plain dicts, tuples and lists kept apart, floats as repr."""
    if isinstance(x, dict):
        return {str(k): _literal(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_literal(v) for v in x)
    return x


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
    assert repr(_literal(_load(key).to_dict())) == SNAPSHOT[key]
