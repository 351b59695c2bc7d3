"""Two suite folders of the same recipe, compared bit for bit: every result.json's metrics and every checkpoint's
model tensors (a change that should not move a number, e.g. a refactor, checked with `suite --name bitwise`).

    python -m tools.bitwise_compare BEFORE AFTER      # exit 1 when anything differs or is missing
"""
import json
import sys
from pathlib import Path

import torch

from mae_core.checkpoint import read_checkpoint  # weights-only: never unpickles code


def compare(before: Path, after: Path) -> tuple[int, list[str]]:
    """(how many files were compared, a line for each one that differs or is missing in `after`)."""
    problems, n = [], 0
    for a in sorted(before.rglob("result.json")):
        b = after / a.relative_to(before)
        n += 1
        if not b.exists():
            problems.append(f"missing {b}")
        elif json.loads(a.read_text())["metrics"] != json.loads(b.read_text())["metrics"]:
            problems.append(f"metrics differ: {a.parent.relative_to(before)}")
    for a in sorted(before.rglob("*.pth")):
        b = after / a.relative_to(before)
        n += 1
        if not b.exists():
            problems.append(f"missing {b}")
            continue
        sa, sb = read_checkpoint(a)["model"], read_checkpoint(b)["model"]
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            problems.append(f"weights differ: {a.relative_to(before)}")
    return n, problems


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n, problems = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(problems + [f"{n} files compared, {len(problems)} differ or are missing"]))
    sys.exit(1 if problems else 0)
