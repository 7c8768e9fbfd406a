"""--fit-budget: the step count fitted to --max-minutes from the first steps' rate, the cosine
schedule ending there, and a resumed run keeping the horizon it fitted (on a fake clock, so the
fitted count is the same on any machine)."""

import json
import types

import pytest
from runfiles import differences, saved_fields

from rnnlab import train
from rnnlab.config import CharLMConfig
from rnnlab.errors import UserError
from rnnlab.runner import train_run

SMALL = dict(hidden_size=8, batch_size=4, seq_len=8, eval_every=20, eval_max_chars=2000, sample_length=0, seed=3)
# 0.3 s of training on a clock that moves 5 ms a step: 30 probe steps take 0.15 s, 30 more fit
FIT = dict(fit_budget=True, max_minutes=0.005, schedule="cosine", backend="numpy")


@pytest.fixture
def fake_clock(monkeypatch):
    """Every step of the loop takes 5 ms (its two clock readings are 5 ms apart)."""
    clock = types.SimpleNamespace(now=0.0)

    def perf_counter():
        clock.now += 0.005
        return clock.now

    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=perf_counter))


def _lrs(run_dir):
    return [json.loads(line)["lr"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_horizon_is_fitted_and_the_schedule_ends_there(tmp_path, fake_clock):
    cfg = CharLMConfig(**SMALL, **FIT).validate()
    summary = train_run(cfg, tmp_path / "run", quiet=True)
    assert 58 <= summary["fitted_steps"] <= 61 and summary["step"] == summary["fitted_steps"]
    assert summary["stop_reason"] == "reached --fit-budget's horizon"
    lrs = _lrs(tmp_path / "run")  # the rate of the step before each evaluation (20, 40, the last)
    assert lrs[0] == pytest.approx(cfg.lr, rel=1e-9)  # before the fit: the base rate
    assert lrs[-1] == pytest.approx(0.1 * cfg.lr, rel=0.02)  # the last step's: near the cosine's floor


def test_a_resumed_run_keeps_the_horizon_it_fitted(tmp_path, fake_clock):
    cfg = CharLMConfig(**SMALL, **FIT).validate()
    whole = train_run(cfg, tmp_path / "whole", quiet=True)
    with train.after_evaluation(lambda step, record: "stopped here" if step == 40 else None):
        assert train_run(cfg, tmp_path / "parts", quiet=True)["step"] == 40
    resumed = train_run(cfg, tmp_path / "parts", resume=True, quiet=True)
    assert resumed["fitted_steps"] == whole["fitted_steps"] == resumed["step"]
    assert differences(saved_fields(tmp_path / "whole"), saved_fields(tmp_path / "parts")) == []


def test_fit_budget_needs_a_clock():
    with pytest.raises(UserError, match="--fit-budget needs --max-minutes"):
        CharLMConfig(fit_budget=True, schedule="cosine").validate()
