"""`mae-bench demo` recipes: synthetic scenes -> the `ci` suite (MAE pretraining, five tasks + knn for the MAE and
scratch inits, tables, regression check against benchmarks/baselines/ci.json)."""
from benchmarks.recipe_schema import section


@section
class Recipe:
    suite: str = "ci"  # benchmarks/recipes/suite/
    # MAE and scratch only: the supervised-from-scratch baseline and its seven steps would take the demo past 15
    # minutes. `mae-bench suite --name ci` runs all three inits. Open: the suite recipe checks them.
    suite_overrides: dict = dict(inits=["mae", "scratch"])  # e.g. also {"pretrain.sets": {"schedule.epochs": 2}}
