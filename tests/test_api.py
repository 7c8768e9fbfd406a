"""rnnlab.fit and rnnlab.Run: the command line's settings and errors from Python, data in memory,
resume, and what a notebook shows."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_text

import rnnlab
from rnnlab.data.series import generated_prices
from rnnlab.errors import UserError

TINY_CHARLM = dict(hidden_size=8, seq_len=8, batch_size=4, max_steps=4, eval_every=2, sample_length=0, backend="numpy")


def test_fit_charlm_from_a_string_matches_the_same_run_from_a_file(tmp_path):
    text = make_text(3000)
    run = rnnlab.fit("charlm", data=text, out=tmp_path / "mem", **TINY_CHARLM)
    (tmp_path / "t.txt").write_text(text)
    from_file = rnnlab.fit("charlm", text=str(tmp_path / "t.txt"), out=tmp_path / "file", **TINY_CHARLM)
    assert (tmp_path / "mem" / "data.txt").read_text() == text
    a, b = run.metrics, from_file.metrics
    assert isinstance(a, pd.DataFrame) and a["step"].iloc[-1] == 4
    np.testing.assert_array_equal(a["val_loss"].to_numpy(), b["val_loss"].to_numpy())
    assert run.task == "charlm" and len(run.sample(20, seed=1)) == 20
    assert run.evaluate()["nats_per_char"] == pytest.approx(a["val_loss"].min(), rel=1e-5)
    assert "nats/char" in run._repr_html_() and "<img" in run._repr_html_()
    assert run.report().name == "report.html"
    # Resume with the same data continues; other data is refused.
    resumed = rnnlab.fit("charlm", data=text, out=tmp_path / "mem", resume=True, max_steps=6)
    assert resumed.metrics["step"].iloc[-1] == 6
    with pytest.raises(UserError, match="resume needs the same data"):
        rnnlab.fit("charlm", data=text + "x", out=tmp_path / "mem", resume=True, max_steps=8)


def test_fit_forecast_from_a_price_series(tmp_path):
    prices = generated_prices(300, seed=2)
    run = rnnlab.fit("forecast", data=prices, out=tmp_path / "fc", window=6, hidden_size=4, epochs=2, backend="numpy")
    saved = pd.read_csv(tmp_path / "fc" / "data.csv")
    assert len(saved) == 300 and list(saved.columns) == ["timestamp", "open"]
    test = run.evaluate()
    assert test["points"] > 0 and "skill" in test
    result = run.predict()
    assert result["last_price"] == pytest.approx(prices.iloc[-1])
    assert repr(run.model).startswith("rnnlab.Model(forecast")


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda tmp: rnnlab.fit("charlm", out=tmp, hiden_size=8),
            "unknown setting 'hiden_size'; did you mean 'hidden_size'?",
        ),
        (lambda tmp: rnnlab.fit("charlm", out=tmp, lr=-1.0), "--lr must be a positive number, got -1.0"),
        (lambda tmp: rnnlab.fit("charlm", out=tmp, cell="transformer"), "--cell must be one of"),
        (lambda tmp: rnnlab.fit("forecast", out=tmp, embed_size=8), "no embedding table"),
        (lambda tmp: rnnlab.fit("charlm", out=tmp, data=b"bytes"), "must be a Python string"),
        (lambda tmp: rnnlab.fit("forecast", out=tmp, data=[1.0, 2.0]), "pandas Series"),
        (lambda tmp: rnnlab.fit("forecast", out=tmp, data=pd.Series([1.0, 2.0])), "DatetimeIndex"),
        (lambda tmp: rnnlab.fit("denoise", out=tmp, data="x"), "draws its own data"),
        (lambda tmp: rnnlab.fit("denoise", out=tmp, preset="fast-60s"), "not one of denoise's presets (charlm: "),
        (lambda tmp: rnnlab.fit("poetry", out=tmp), "unknown task 'poetry'"),
    ],
)
def test_bad_settings_raise_the_flags_message_and_write_nothing(tmp_path, call, match):
    out = tmp_path / "run"
    with pytest.raises(UserError, match=match.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        call(out)
    assert not out.exists()


def test_data_that_cannot_train_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="too few"):
        rnnlab.fit("forecast", data=generated_prices(20, seed=1), out=out, backend="numpy")
    assert not out.exists()


def test_run_opens_an_existing_directory_and_refuses_an_empty_one(tmp_path):
    rnnlab.fit("charlm", data=make_text(2000), out=tmp_path / "a", **TINY_CHARLM)
    run = rnnlab.Run(tmp_path / "a")
    assert run.config["hidden_size"] == 8 and json.loads(run.metrics.to_json())
    with pytest.raises(UserError, match="holds no run"):
        rnnlab.Run(tmp_path)
