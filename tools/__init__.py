"""Development tools, outside the installed package (as detectron2's tools/): planted regressions, seed tables,
the init comparison, speed benchmarks. Run from the repository root as `python -m tools.NAME`."""
import argparse
import sys
from pathlib import Path

RECIPES = Path(__file__).parent / "recipes"  # the speed benchmarks' recipe families, `bench` and `bench_data`


def load_recipe(family: str, name: str, overrides=None):
    """A tool's recipe: `tools/recipes/<family>/{schema,<name>}.py` (or a path), `--set` overrides applied."""
    from benchmarks.config import load_recipe as load
    return load(str(RECIPES / family), name, overrides)


def recipe_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--recipe", default="base", help="recipe name or path to a recipe .py (default: base)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe entry (repeatable)")
    return p


def run_main(body, argv=None) -> int:
    """Run a tool's `body(argv) -> exit code`: bad input as one line and exit 1, as `mae-bench` does."""
    from benchmarks.error_lines import describe

    from mae_core.threads import configure_threads
    configure_threads()  # OMP_NUM_THREADS wins when set
    try:
        return body(argv)
    except Exception as e:
        print(f"mae-bench: error: {describe(e)}", file=sys.stderr)
        return 1
