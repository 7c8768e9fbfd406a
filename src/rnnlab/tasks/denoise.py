"""denoise: recover a clean Ornstein-Uhlenbeck signal from noisy observations,
judged against the exact Kalman estimates for the same process.

What is specific to this task and nothing else:

* data: fresh sequences every step from a seeded generator (its state is in
  the checkpoint, so a resumed run draws the same sequences), a fixed
  validation set, and a fresh test set for the final comparison;
* targets: ``predict`` (the exercise: inputs y[0..T-2], targets x[1..T-1],
  i.e. x[t+1] from y[0..t]) or ``filter`` (x[t] from y[0..t]);
* the baseline: the Kalman predictor or filter, the best any linear method can do;
* the comparison in words and numbers, and the plots.

The model is the exercise's Dense(H) - ReLU - GRU(H) - Dense(1): ``input_kind``
``dense_relu`` with one input and one output.  The loop is ``rnnlab.train``.

Three independent seed streams come from ``--seed``: ``[seed, 0]`` training
batches, ``[seed, 2]`` validation, ``[seed, 3]`` test (parameters use ``seed``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .. import averaging, report, runs, train
from ..cells import ModelSpec
from ..config import DenoiseConfig
from ..data.ou import OUProcess, generate_ou_process, kalman
from ..errors import UserError
from ..facts import Facts, Headline, read_json
from .definition import COMMON_SPACE, TaskDefinition, sequence_io

PREDICT_CHUNK = 10_000  # sequences per forward pass at evaluation (bounds memory for long sequences)
TRACES_SHOWN = 4
ESTIMATOR_NAMES = {"predict": "predictor", "filter": "filter"}


def spec_of(cfg: DenoiseConfig) -> ModelSpec:
    return ModelSpec(cfg.cell, 1, cfg.hidden_size, 1, cfg.layers, "dense_relu", residual=cfg.residual, norm=cfg.norm)


def draw(cfg: DenoiseConfig, proc: OUProcess, count: int, rng: np.random.Generator):
    """``count`` fresh (clean, noisy) sequences ``[count, seq_len]`` (float64)."""
    return generate_ou_process(count, cfg.seq_len, proc.mu, proc.tau, proc.sigma, proc.dt, proc.noise_var, rng)


def aligned(clean: np.ndarray, noisy: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray]:
    """(observations seen, clean values to estimate), both ``[B, T']``: for predict, y[0..T-2]
    and x[1..T-1] (T' = T-1); for filter, y and x as they are."""
    return (noisy[:, :-1], clean[:, 1:]) if target == "predict" else (noisy, clean)


def model_pairs(clean: np.ndarray, noisy: np.ndarray, target: str, dtype):
    """(inputs ``[B, T', 1]``, targets ``[B, T', 1]``) in ``dtype``, as ``aligned`` pairs them.

    The trailing feature axis is explicit on both sides: a ``[B, T']`` target
    against ``[B, T', 1]`` outputs would broadcast to ``[B, T', T']`` and train
    the model to the mean (the losses refuse that shape).
    """
    seen, truth = aligned(clean, noisy, target)
    return seen[..., None].astype(dtype), truth[..., None].astype(dtype)


def kalman_estimate(noisy: np.ndarray, proc: OUProcess, target: str) -> np.ndarray:
    """The Kalman estimate aligned with the model's targets: ``[B, T-1]`` predict or ``[B, T]`` filter."""
    return kalman(noisy, proc)[target]


def predict(trainer, inputs: np.ndarray) -> np.ndarray:
    """Model outputs ``[B, T']`` (float64) for inputs ``[B, T', 1]``, from a zero state, in chunks."""
    out = []
    for start in range(0, inputs.shape[0], PREDICT_CHUNK):
        chunk = inputs[start : start + PREDICT_CHUNK]
        y, _ = trainer.forward(trainer.init_carry(chunk.shape[0]), chunk)
        out.append(np.asarray(y[..., 0], dtype=np.float64))
    return np.concatenate(out)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.square(np.asarray(a, np.float64) - b)))


class DenoiseTask(train.TaskBase):
    """The task side of the training loop (see ``rnnlab.train.run``)."""

    name = "denoise"
    item_name = "seqs"

    def __init__(self, cfg: DenoiseConfig):
        self.cfg = cfg
        self.proc = cfg.process()
        self.dtype = np.dtype(cfg.dtype)
        self.rng = np.random.default_rng([cfg.seed, 0])
        val_clean, val_noisy = draw(cfg, self.proc, cfg.val_sequences, np.random.default_rng([cfg.seed, 2]))
        self.val_inputs, _ = model_pairs(val_clean, val_noisy, cfg.target, self.dtype)
        self.val_truth = aligned(val_clean, val_noisy, cfg.target)[1]
        self.val_kalman_mse = mse(kalman_estimate(val_noisy, self.proc, cfg.target), self.val_truth)
        self.batch_size = cfg.batch_size
        self.items_per_step = cfg.batch_size

    def next_batch(self):
        clean, noisy = draw(self.cfg, self.proc, self.batch_size, self.rng)
        inputs, targets = model_pairs(clean, noisy, self.cfg.target, self.dtype)
        return inputs, targets, True  # every batch is new sequences: start from a zero state

    def evaluate(self, trainer) -> dict:
        val = mse(predict(trainer, self.val_inputs), self.val_truth)
        return {
            "val_loss": val,
            "val_mse": val,
            "val_kalman_mse": self.val_kalman_mse,
            "val_mse_ratio_to_kalman": val / self.val_kalman_mse,
        }

    def describe_eval(self, trainer, state, record, final) -> str:
        train_text = f"train MSE {state.smoothed_loss:.5f}" if state.smoothed_loss is not None else "train -"
        speed = record.get("seqs_per_s")
        speed_text = f" | {speed:,.0f} seqs/s" if speed else ""
        return (
            f"step {state.step} | {train_text} | val MSE {record['val_mse']:.5f} "
            f"(Kalman {record['val_kalman_mse']:.5f}, ratio {record['val_mse_ratio_to_kalman']:.4f})"
            f"{speed_text}"
        )

    def data_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_data_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def checkpoint_meta(self) -> dict:
        return {}

    # ----- the run skeleton's hooks (rnnlab.runner)
    loss = "mse"

    def spec(self) -> ModelSpec:
        return spec_of(self.cfg)

    def budget(self) -> tuple[train.Budget, int]:
        cfg = self.cfg
        return train.Budget(
            max_steps=cfg.steps,
            max_minutes=cfg.max_minutes,
            eval_every=cfg.eval_every,
            max_steps_flag=f"--steps {cfg.steps}",
        ), cfg.steps

    def after_training(self, trainer, summary: dict, run) -> dict:
        """The loss plot; unless interrupted, the best model (held by ``run``) against Kalman on
        fresh test sequences (``test.json``, ``traces.png``)."""
        cfg = self.cfg
        report.plot_losses(
            run.path, "MSE", "val_mse", baseline=("Kalman (validation)", self.val_kalman_mse), log_y=True
        )
        extra = {"val_kalman_mse": self.val_kalman_mse}
        if summary["interrupted"]:
            return extra
        best = run.best
        tested = dict(model="best", step=best.step) if best else dict(model="checkpoint", step=summary["step"])
        with averaging.holding(trainer, best and best.params):
            result = test_model(trainer, cfg, cfg.test_sequences, np.random.default_rng([cfg.seed, 3]))
        result.update(tested)
        plot_traces(run.path / "traces.png", result, cfg.dt)
        run.write_text("test.json", json.dumps(_without_traces(result), indent=1) + "\n")
        return dict(extra, test=result)


# --------------------------------------------------------------------------- test and comparison


def _lag_steps(estimate: np.ndarray, truth: np.ndarray, max_shift: int = 3) -> float:
    """By how many steps ``estimate`` trails ``truth`` (both ``[B, T']``): the shift s that
    minimises the MSE between estimate[t] and truth[t - s], refined by a parabola
    through the neighbouring shifts.  The same positions t are used for every s."""
    S = min(max_shift, truth.shape[1] - 2)
    if S < 1:
        return 0.0
    errs = np.array([mse(estimate[:, S:], truth[:, S - s : truth.shape[1] - s]) for s in range(S + 1)])
    k = int(np.argmin(errs))
    if 0 < k < S:
        left, mid, right = errs[k - 1], errs[k], errs[k + 1]
        curvature = left - 2 * mid + right
        if curvature > 0:
            return float(k + 0.5 * (left - right) / curvature)
    return float(k)


def _roughness(x: np.ndarray) -> float:
    """Mean squared change from one step to the next."""
    return float(np.mean(np.square(np.diff(x, axis=1))))


def compare(
    clean: np.ndarray, noisy: np.ndarray, model: np.ndarray, kalman_est: np.ndarray, target: str
) -> tuple[dict, str]:
    """Numbers and a short paragraph: how far model, noisy input and Kalman are from the
    clean signal, how much smoother the output is than the input, and whether it lags.

    ``clean``/``noisy`` are the raw ``[B, T]`` sequences; ``model``/``kalman_est`` are
    aligned with the target (``[B, T-1]`` for predict, ``[B, T]`` for filter).
    """
    latest, truth = aligned(clean, noisy, target)  # the latest observation is the naive estimate
    what = "x[t+1] from y[0..t]" if target == "predict" else "x[t] from y[0..t]"
    numbers = {
        "sequences": int(clean.shape[0]),
        "model_rmse": math.sqrt(mse(model, truth)),
        "kalman_rmse": math.sqrt(mse(kalman_est, truth)),
        "noisy_rmse": math.sqrt(mse(latest, truth)),
        "model_roughness": _roughness(model),
        "noisy_roughness": _roughness(latest),
        "clean_roughness": _roughness(truth),
        "kalman_roughness": _roughness(kalman_est),
        "model_lag_steps": _lag_steps(model, truth),
        "kalman_lag_steps": _lag_steps(kalman_est, truth),
    }
    n = numbers
    ratio = (n["model_rmse"] / n["kalman_rmse"]) ** 2
    smoother = n["noisy_roughness"] / n["model_roughness"] if n["model_roughness"] > 0 else math.inf
    closer = "closer to" if ratio < 1 else "further from"
    text = [
        f"On {n['sequences']:,} fresh test sequences, the model's estimate of {what} is off by "
        f"RMSE {n['model_rmse']:.4f}; the Kalman {ESTIMATOR_NAMES[target]} by {n['kalman_rmse']:.4f} (MSE ratio "
        f"{ratio:.4f}: the model is {abs(ratio - 1) * 100:.1f}% {closer} the clean signal in MSE), "
        f"and the latest noisy observation by {n['noisy_rmse']:.4f}."
    ]
    if ratio < 1:
        text.append(
            "Beating Kalman is possible here: x[0] is uniform, not Gaussian, so the Kalman estimate "
            "is the best linear one, and a nonlinear model can use the bounded start."
        )
    text.append(
        f"The output is {smoother:.1f}x smoother than the noisy input (mean squared change per step "
        f"{n['model_roughness']:.4f} vs {n['noisy_roughness']:.4f}; the clean signal's is "
        f"{n['clean_roughness']:.4f}, the Kalman estimate's {n['kalman_roughness']:.4f})."
    )
    lag, kalman_lag = n["model_lag_steps"], n["kalman_lag_steps"]
    if lag >= 0.25:
        text.append(
            f"It lags: it matches the clean signal best about {lag:.1f} steps earlier than intended "
            f"(the Kalman estimate: {kalman_lag:.1f}), the price of averaging out noise with past "
            "observations only."
        )
    else:
        text.append(
            f"It does not lag noticeably (best match {lag:.1f} steps earlier than intended; "
            f"the Kalman estimate: {kalman_lag:.1f})."
        )
    return numbers, " ".join(text)


def test_model(trainer, cfg: DenoiseConfig, sequences: int, rng: np.random.Generator) -> dict:
    """Model and Kalman MSEs on ``sequences`` fresh sequences, their ratio, and the comparison.

    Also returns the first few sequences' traces for plotting (key ``traces``).
    """
    proc = cfg.process()
    clean, noisy = draw(cfg, proc, sequences, rng)
    inputs, _ = model_pairs(clean, noisy, cfg.target, np.dtype(cfg.dtype))
    truth = aligned(clean, noisy, cfg.target)[1]
    model_out = predict(trainer, inputs)
    estimates = kalman(noisy, proc)
    kalman_out = estimates[cfg.target]
    model_mse, kalman_mse_value = mse(model_out, truth), mse(kalman_out, truth)
    numbers, text = compare(clean, noisy, model_out, kalman_out, cfg.target)
    shown = slice(0, min(TRACES_SHOWN, sequences))
    return {
        "test_sequences": sequences,
        "target": cfg.target,
        "model_mse": model_mse,
        "kalman_mse": kalman_mse_value,
        "mse_ratio_to_kalman": model_mse / kalman_mse_value,
        "kalman_predict_mse": mse(estimates["predict"], clean[:, 1:]),
        "kalman_filter_mse": mse(estimates["filter"], clean),
        "kalman_smoother_mse": mse(estimates["smoother"], clean),
        "noisy_mse": mse(noisy, clean),
        "comparison": numbers,
        "comparison_text": text,
        "traces": {
            "clean": clean[shown],
            "noisy": noisy[shown],
            "model": model_out[shown],
            "kalman": kalman_out[shown],
        },
    }


def plot_traces(path: Path, result: dict, dt: float) -> Path:
    """Clean vs noisy vs model vs Kalman for a few test sequences, the comparison text underneath."""
    import textwrap

    plt = report.pyplot()
    tr = result["traces"]
    count = len(tr["clean"])
    cols = 2 if count > 1 else 1
    rows = math.ceil(count / cols)
    wrapped = textwrap.fill(result["comparison_text"], 110)
    text_inches = 0.2 * (wrapped.count("\n") + 1) + 0.4
    fig = plt.figure(figsize=(10, 2.8 * rows + text_inches), dpi=100)
    grid = fig.add_gridspec(rows, cols, bottom=text_inches / (2.8 * rows + text_inches) + 0.05, top=0.93)
    T = tr["clean"].shape[1]
    t_all = np.arange(T) * dt
    # The model's output at t estimates x[t+1] when predicting: draw it where it lands.
    t_est = t_all[1:] if result["target"] == "predict" else t_all
    for i in range(count):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.plot(t_all, tr["noisy"][i], ".", color="0.6", label="noisy input")
        ax.plot(t_all, tr["clean"][i], "-", color="k", linewidth=1.5, label="clean")
        ax.plot(t_est, tr["kalman"][i], "--", color="tab:orange", label=f"Kalman {ESTIMATOR_NAMES[result['target']]}")
        ax.plot(t_est, tr["model"][i], "-", color="tab:blue", label="model")
        ax.set_xlabel("time")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize="small", ncol=2)
    fig.suptitle(
        f"Test sequences: MSE ratio to Kalman {result['mse_ratio_to_kalman']:.4f} "
        f"on {result['test_sequences']:,} sequences"
    )
    fig.text(0.05, 0.02, wrapped, fontsize=9, va="bottom", ha="left")
    report.save_figure(fig, path)
    return Path(path)


def _without_traces(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "traces"}


# --------------------------------------------------------------------------- runs


def open_task(cfg: DenoiseConfig, meta: dict | None, where: str) -> DenoiseTask:
    """The data of a run: the fixed validation set and the training stream, at the checkpoint's
    place in the stream when ``meta`` is a checkpoint's."""
    task = DenoiseTask(cfg)
    if meta is not None:
        task.restore(meta, where)
    return task


def load_run(run_dir: str | os.PathLike, which: str = "checkpoint", backend: str | None = None):
    """A saved denoise model."""
    return runs.load_run(run_dir, which, "denoise", DenoiseConfig, backend, "mse")


def evaluate_run(
    run_dir, which: str = "checkpoint", sequences: int = 100_000, seed: int = 0, backend: str | None = None
) -> dict:
    """Test a saved model against Kalman on ``sequences`` fresh sequences of its process
    (drawn from ``[seed, 4]``, never the training, validation or test streams of a run)."""
    if sequences < 1:
        raise UserError(f"--sequences must be a positive integer, got {sequences}")
    loaded = load_run(run_dir, which, backend)
    trainer, cfg, meta = loaded.trainer, loaded.cfg, loaded.meta
    result = test_model(trainer, cfg, sequences, np.random.default_rng([seed, 4]))
    step = meta["step"] if which == "best" else meta["loop"]["step"]
    return dict(_without_traces(result), run=str(run_dir), model=which, step=step)


def report_facts(run_dir: Path, meta: dict, metrics: list[dict]):
    """Test MSE against the Kalman estimate (and the raw noisy observation), the loss and trace
    plots and the comparison in words, for ``rnnlab.html_report``."""
    facts = Facts(val_curve=("val_mse", "validation MSE"))
    test = read_json(Path(run_dir) / "test.json")
    if test is not None:
        ratio = test["mse_ratio_to_kalman"]
        what = "x[t+1] from y[0..t]" if test.get("target") == "predict" else "x[t] from y[0..t]"
        facts.headline.append(
            Headline(
                f"test MSE, {what} ({test['test_sequences']:,} fresh sequences)",
                f"MSE {test['model_mse']:.5f}",
                f"Kalman: MSE {test['kalman_mse']:.5f}",
                f"MSE ratio to Kalman {ratio:.4f}",
                _standing(ratio),
            )
        )
        facts.headline.append(
            Headline(
                "test MSE vs the noisy input",
                f"MSE {test['model_mse']:.5f}",
                f"latest noisy observation: MSE {test['noisy_mse']:.5f}",
                f"{test['noisy_mse'] / test['model_mse']:.2f}x lower",
                "better" if test["model_mse"] < test["noisy_mse"] else "worse",
            )
        )
        if test.get("comparison_text"):
            facts.texts.append(("Against Kalman, in words", test["comparison_text"]))
    else:
        rows = [r for r in metrics if r.get("val_mse_ratio_to_kalman") is not None]
        if rows:
            last = rows[-1]
            facts.headline.append(
                Headline(
                    f"validation MSE at step {last['step']:,} (no test yet)",
                    f"MSE {last['val_mse']:.5f}",
                    f"Kalman: MSE {last['val_kalman_mse']:.5f}",
                    f"MSE ratio to Kalman {last['val_mse_ratio_to_kalman']:.4f}",
                    _standing(last["val_mse_ratio_to_kalman"]),
                )
            )
    facts.figures += [
        (
            "Training and validation MSE (log scale); the dashed line is the Kalman estimate's validation MSE",
            "loss.png",
        ),
        ("Test sequences: clean signal, noisy observations, the model and Kalman", "traces.png"),
    ]
    return facts


def _standing(ratio: float) -> str:
    """Within 2% of the optimal linear estimate counts as matching it."""
    return "better" if ratio <= 1.0 else "close" if ratio <= 1.02 else "worse"


# --------------------------------------------------------------------------- the task, for the registry


def _demo_config(quick: bool) -> DenoiseConfig:
    return (
        DenoiseConfig(steps=300, eval_every=100, val_sequences=1000, test_sequences=5000) if quick else DenoiseConfig()
    )


def _demo_intro(cfg: DenoiseConfig) -> str:
    return (
        f"{cfg.cell} H={cfg.hidden_size} on a noisy Ornstein-Uhlenbeck signal, against the Kalman estimate "
        f"({cfg.steps} steps, {cfg.backend} backend)"
    )


TASK = TaskDefinition(
    name="denoise",
    config_cls=DenoiseConfig,
    help="denoise an Ornstein-Uhlenbeck signal, against Kalman",
    objective="val MSE",
    budget_fields=("steps",),
    open_task=open_task,
    load_run=load_run,
    report_facts=report_facts,
    evaluate=lambda run_dir, options: evaluate_run(run_dir, "best", options.get("sequences", 10_000)),
    sweep_space={
        **COMMON_SPACE,
        "lr": {"low": 1e-4, "high": 3e-2, "log": True},
        "cell": {"choices": ["gru", "gru_reset_after", "lstm", "rnn"]},
        "hidden_size": {"choices": [8, 16, 32]},
    },
    demo=_demo_config,
    demo_intro=_demo_intro,
    onnx=sequence_io("noisy", "estimate"),
)
