"""The seed table of several suite runs: each task x init's mean ± sample std over seeds, and MAE - scratch with
its standard error, sqrt(s_mae^2 / n + s_scratch^2 / n).

    python -m tools.seed_table SUITE_RUN [SUITE_RUN ...]   # folders written by `mae-bench suite --set seed=S`
"""
import math
import sys

from results.frame import load_records
from results.regression import measured_values

from benchmarks.tasks import primary_metrics

INITS = ("mae", "supervised", "scratch")


def seed_rows(folders) -> list[dict]:
    """Per (task, arch, metric): {init: (mean, std, n)} from the result files under `folders`."""
    records = [r for folder in folders for r in load_records(folder)]
    values = measured_values(records)
    keep = primary_metrics()
    rows = {}
    for key, v in values.iterrows():
        *setting, init, arch, metric = key.split("/")
        if metric not in keep.get(v["task"], ()) or init not in INITS:
            continue
        row = rows.setdefault(("/".join(setting), arch, metric), {})
        row[init] = (float(v["value"]), float(v["std"]) if v["runs"] > 1 else math.nan, int(v["runs"]))
    return [{"setting": s, "arch": a, "metric": m, **inits} for (s, a, m), inits in sorted(rows.items())]


def markdown(rows) -> str:
    lines = ["| task | metric | " + " | ".join(INITS) + " | MAE - scratch | / SE |", "|---" * (len(INITS) + 4) + "|"]
    for row in rows:
        cells = [f"{row[i][0]:.1f} ± {row[i][1]:.1f} (n={row[i][2]})" if i in row else "-" for i in INITS]
        diff = se = math.nan
        if "mae" in row and "scratch" in row:
            (m, sm, nm), (c, sc, nc) = row["mae"], row["scratch"]
            diff, se = m - c, math.sqrt(sm ** 2 / nm + sc ** 2 / nc)
        ratio = f"{diff / se:.1f}" if se > 0 else "-"
        lines.append(f"| {row['setting']} | {row['metric']} | " + " | ".join(cells) + f" | {diff:+.1f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(markdown(seed_rows(sys.argv[1:])))
