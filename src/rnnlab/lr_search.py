"""``rnnlab denoise search``: the learning-rate search of the OU exercise, as a sweep over a grid
of one parameter (same command, files and table as before it ran on the sweep engine)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from . import checkpoint, report
from .config import DenoiseConfig
from .errors import UserError
from .sweep import SweepSettings, run_sweep
from .tasks import of_config


def lr_search(
    cfg: DenoiseConfig, lrs: list[float], out: str | os.PathLike, force: bool = False, quiet: bool = False
) -> dict:
    """One run per learning rate in ``out/lr_<rate>``; the best rate is the one with the
    lowest validation MSE.  Writes ``search.json``, ``search.md`` and ``lr_search.png``.

    This is a sweep over a grid of one parameter, without pruning; its
    Optuna study is ``out/study.db``.  A rate whose loss becomes non-finite is reported as
    diverged; the search goes on.
    Long on purpose: the sweep, then the search's own rows, plot, JSON and table from its trials, in
    the order they are written.
    """
    if not lrs:
        raise UserError("--lrs needs at least one learning rate")
    out = Path(out)
    cfg.validate()
    for lr in lrs:
        dataclasses.replace(cfg, lr=lr).validate()
    if (out / "search.json").exists() and not force:
        raise UserError(f"{str(out)!r} already holds a search; pass --force to replace it or choose another --out")
    if (out / "study.db").exists():
        (out / "study.db").unlink()  # --force: a new study, not the old one continued
    rates = sorted(set(lrs))
    settings = SweepSettings(
        task=of_config(cfg).name,
        base_config=dataclasses.asdict(cfg),
        space={"lr": {"choices": rates}},
        trials=len(rates),
        study="lr-search",
        out=str(out),
        pruner="none",
        sampler="grid",
        quiet=quiet,
        trial_dir="lr_{lr:g}",
    )
    trials = {t["params"]["lr"]: t for t in run_sweep(settings)["trials"] if "lr" in t["params"]}
    rows, curves, kalman_val = [], {}, None
    for lr in rates:
        trial = trials.get(lr)
        if trial is None:  # not reached: the search was interrupted
            continue
        results, status = trial["results"], trial["status"]
        row = {
            "lr": lr,
            "run_dir": trial["run_dir"],
            "status": {"complete": "ok", "diverged": "diverged"}.get(status, status or trial["state"]),
        }
        if status == "complete":
            kalman_val = results["val_kalman_mse"]
            row.update(
                steps=results["step"],
                best_val_mse=results["best_val_loss"],
                train_seconds=round(results["train_seconds"], 2),
                best_val_ratio_to_kalman=results["best_val_loss"] / kalman_val,
                test_mse_ratio_to_kalman=results.get("test", {}).get("mse_ratio_to_kalman"),
            )
        metrics = report.read_metrics(trial["run_dir"])
        curves[f"lr {lr:g}"] = [(m["step"], m["train_loss"]) for m in metrics if m.get("train_loss") is not None]
        rows.append(row)
    finished = [r for r in rows if r["status"] == "ok"]
    best = min(finished, key=lambda r: r["best_val_mse"]) if finished else None
    baseline = ("Kalman (validation)", kalman_val) if kalman_val is not None else None
    report.plot_curves(
        out / "lr_search.png", curves, "training MSE (smoothed)", "Learning-rate search: training loss", baseline
    )
    result = {
        "lrs": lrs,
        "runs": rows,
        "best_lr": best and best["lr"],
        "val_kalman_mse": kalman_val,
        "config": dataclasses.asdict(cfg),
    }
    checkpoint.atomic_write_text(out / "search.json", json.dumps(result, indent=1) + "\n")
    checkpoint.atomic_write_text(out / "search.md", search_table(result) + "\n")
    return result


def search_table(result: dict) -> str:
    """A markdown table of the search, and the best rate named."""
    lines = [
        "| lr | status | steps | best val MSE | val ratio to Kalman | test ratio to Kalman | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:

        def num(key, fmt, r=r):
            value = r.get(key)
            return format(value, fmt) if value is not None else "-"

        lines.append(
            f"| {r['lr']:g} | {r['status']} | {r.get('steps', '-')} | {num('best_val_mse', '.5f')} | "
            f"{num('best_val_ratio_to_kalman', '.4f')} | {num('test_mse_ratio_to_kalman', '.4f')} | "
            f"{num('train_seconds', '.1f')} |"
        )
    if result["best_lr"] is not None:
        lines.append(f"\nBest learning rate: {result['best_lr']:g} (lowest validation MSE).")
    else:
        lines.append("\nNo learning rate finished: every run diverged or was interrupted.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- report
