"""The statistics a forecast is judged by, each against what it promises: the Diebold-Mariano
test's size under the null, the Student-t p-value, the Bartlett variance by hand, conformal
intervals' coverage, the EWMA volatility's recursion and its use of the past only, and the
scale-free (log-return) comparison."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from rnnlab.tasks import forecast
from rnnlab.tasks import forecast_stats as stats

# --------------------------------------------------------------------------- Diebold-Mariano


@pytest.mark.parametrize(
    "statistic,dof",
    [
        (12.7062, 1),
        (4.3027, 2),
        (3.1824, 3),
        (2.7764, 4),
        (2.2281, 10),
        (2.0930, 19),
        (2.0096, 49),
        (1.9840, 100),
        (1.9623, 1000),
    ],
)
def test_student_t_p_value_at_the_tables_5_percent_points(statistic, dof):
    # two-sided 5% critical values of Student's t, as printed in the usual tables (4 decimals)
    assert stats.student_t_two_sided_p(statistic, dof) == pytest.approx(0.05, abs=2e-5)
    assert stats.student_t_two_sided_p(-statistic, dof) == stats.student_t_two_sided_p(statistic, dof)


def test_student_t_p_value_edges():
    assert stats.student_t_two_sided_p(0.0, 7) == 1.0
    assert stats.student_t_two_sided_p(math.inf, 7) == 0.0
    assert math.isnan(stats.student_t_two_sided_p(math.nan, 7))
    # many degrees of freedom: the normal's tail
    assert stats.student_t_two_sided_p(2.5, 100_000) == pytest.approx(2 * (1 - NormalDist().cdf(2.5)), rel=1e-3)
    # Cauchy (1 dof): P(|T| > t) = 1 - 2 atan(t) / pi
    assert stats.student_t_two_sided_p(3.0, 1) == pytest.approx(1 - 2 * math.atan(3.0) / math.pi, rel=1e-12)


def test_bartlett_long_run_variance_by_hand():
    d = np.array([1.0, 3.0, -2.0, 4.0, 0.0])
    # centred: -0.2, 1.8, -3.2, 2.8, -1.2 (mean 1.2); autocovariances summed over the pairs there are, / n
    gamma0 = (0.04 + 3.24 + 10.24 + 7.84 + 1.44) / 5  # 4.56
    gamma1 = (-0.2 * 1.8 + 1.8 * -3.2 + -3.2 * 2.8 + 2.8 * -1.2) / 5  # -3.688
    gamma2 = (-0.2 * -3.2 + 1.8 * 2.8 + -3.2 * -1.2) / 5  # 1.904
    assert stats.long_run_variance(d, lags=0) == pytest.approx(gamma0)
    assert stats.long_run_variance(d, lags=1) == pytest.approx(gamma0 + 2 * (1 / 2) * gamma1)  # 0.872
    assert stats.long_run_variance(d, lags=2) == pytest.approx(gamma0 + 2 * (2 / 3) * gamma1 + 2 * (1 / 3) * gamma2)
    assert stats.long_run_variance(d, lags=2) == pytest.approx(0.912)


def test_diebold_mariano_with_no_lags_is_the_paired_t_statistic():
    rng = np.random.default_rng(3)
    actual, predicted, last = rng.normal(size=(3, 30))
    d = (predicted - actual) ** 2 - (last - actual) ** 2
    dm = stats.diebold_mariano(actual, predicted, last)
    assert dm["statistic"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(30)))
    assert dm["p_value"] == pytest.approx(stats.student_t_two_sided_p(dm["statistic"], 29))
    assert dm["lags"] == 0 and dm["distribution"] == "student-t(29)"
    auto = stats.diebold_mariano(actual, predicted, last, lags="auto")
    assert auto["variance"] == "newey-west" and auto["lags"] == stats.newey_west_lags(30) == 3
    assert "Newey-West variance with 3 lags" in stats.describe_dm(auto)
    assert "no autocovariances" in stats.describe_dm(dm)


@pytest.mark.parametrize("n", [20, 50, 100])
def test_diebold_mariano_rejects_5_percent_of_true_nulls(n):
    """Model and persistence errors independent standard normals: equal expected squared error.
    The default test rejects at the 5% level in 5% +- 1.5 points of 4,000 draws (the normal
    p-value with a Newey-West variance rejected 9-11% at n = 20)."""
    rng = np.random.default_rng(n)
    draws = 4000
    rejected = 0
    for _ in range(draws):
        model_error, persistence_error = rng.standard_normal((2, n))
        rejected += stats.diebold_mariano(np.zeros(n), model_error, persistence_error)["p_value"] < 0.05
    assert 0.035 <= rejected / draws <= 0.065, rejected / draws


# --------------------------------------------------------------------------- conformal intervals


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_conformal_intervals_cover_at_least_nominal_at_m_60(level):
    """m = 60 calibration residuals and one new one, all exchangeable (standard normal here).
    Each draw's interval covers a new residual with probability F(high) - F(low); over 20,000
    draws its mean lies between the nominal level and nominal + 2/(m+1), as split conformal
    prediction promises.  Plain empirical quantiles under-cover."""
    m, draws = 60, 20000
    rng = np.random.default_rng(int(100 * level))
    residuals = np.sort(rng.standard_normal((draws, m)), axis=1)
    cdf = np.vectorize(NormalDist().cdf)
    levels = stats.interval_levels(level)

    conformal = np.empty(draws)
    ranks = stats.conformal_ranks(m, levels)
    low, high = residuals[:, ranks[0] - 1], residuals[:, ranks[1] - 1]
    conformal[:] = cdf(high) - cdf(low)
    assert level <= conformal.mean() <= level + 2 / (m + 1), conformal.mean()
    # through the forecast's own reader of residuals: the same order statistics
    calibration = forecast.Calibration(None, residuals[0], m)
    np.testing.assert_array_equal(calibration.unit_quantiles(levels), [low[0], high[0]])

    interpolated = np.quantile(residuals, levels, axis=1)
    assert (cdf(interpolated[1]) - cdf(interpolated[0])).mean() < level - 0.005  # what it replaced


def test_conformal_ranks_and_when_residuals_are_too_few():
    # m = 60, 80%: the 55th smallest above and, by symmetry, the 6th below; 95%: the 60th and 1st
    np.testing.assert_array_equal(stats.conformal_ranks(60, [0.1, 0.9]), [6, 55])
    np.testing.assert_array_equal(stats.conformal_ranks(60, [0.025, 0.975]), [1, 60])
    np.testing.assert_array_equal(stats.conformal_ranks(59, [0.1, 0.5, 0.9]), [6, 30, 54])  # 60 x 0.9 = 54 exactly
    assert stats.conformal_enough(39, 0.95) and not stats.conformal_enough(38, 0.95)
    assert stats.conformal_enough(9, 0.8) and not stats.conformal_enough(8, 0.8)
    assert forecast.Calibration(None, np.arange(20.0), 20).too_few_for(0.95)
    assert not forecast.Calibration(None, np.arange(60.0), 60).too_few_for(0.95)


# --------------------------------------------------------------------------- the EWMA random walk


def test_ewma_volatility_is_the_riskmetrics_recursion_on_the_past_only():
    prices = np.array([100.0, 101.0, 99.0, 102.0, 102.0, 98.0])
    r = np.diff(np.log(prices))
    sd = stats.ewma_volatility(prices, 0.9)
    assert sd.shape == (7,) and np.isnan(sd[:2]).all()
    assert sd[2] == pytest.approx(abs(r[0]))  # one return known: its own size
    # entry t weighs r_(t-1), r_(t-2), ... by 1, 0.9, 0.81, ... over the weight so far
    for t in range(2, 7):
        w = 0.9 ** np.arange(t - 2, -1, -1)
        assert sd[t] == pytest.approx(math.sqrt(np.sum(w * r[: t - 1] ** 2) / w.sum()), rel=1e-12)
    # after the start has faded it is the textbook recursion s2_t = l s2_(t-1) + (1 - l) r_(t-1)^2
    long = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.02, 400)))
    sd = stats.ewma_volatility(long, 0.94)
    r2 = np.diff(np.log(long)) ** 2
    assert sd[400] ** 2 == pytest.approx(0.94 * sd[399] ** 2 + 0.06 * r2[398], rel=1e-12)
    # changing a price changes no entry before the one it enters
    changed = long.copy()
    changed[300:] *= 1.5
    np.testing.assert_array_equal(stats.ewma_volatility(changed, 0.94)[:301], sd[:301])
    assert stats.ewma_volatility(changed, 0.94)[302] != sd[302]


def test_ewma_random_walk_follows_volatility_that_the_training_one_misses():
    """Returns whose volatility jumps from 1% to 4% halfway: a random walk with the first
    half's volatility covers far too little of the second half; the EWMA one covers about
    what it says, and its CRPS is lower."""
    rng = np.random.default_rng(1)
    vol = np.r_[np.full(1000, 0.01), np.full(1000, 0.04)]
    prices = 100 * np.exp(np.cumsum(vol * rng.standard_normal(2000)))
    second = np.arange(1100, 2000)
    actual, last = prices[second], prices[second - 1]
    ewma = stats.random_walk_scores(actual, last, stats.ewma_volatility(prices, 0.94)[second])
    stale = stats.random_walk_scores(actual, last, float(np.sqrt(np.mean(np.diff(np.log(prices[:1000])) ** 2))))
    assert stale["inside_80"].mean() < 0.4
    assert ewma["inside_80"].mean() == pytest.approx(0.8, abs=0.04)
    assert ewma["crps"].mean() < 0.9 * stale["crps"].mean()
    summary = stats.against_random_walks(
        actual,
        last,
        ewma["crps"],
        {"ewma_random_walk": stats.ewma_volatility(prices, 0.94)[second], "train_vol_random_walk": 0.01},
    )
    assert summary["crps_skill"] == pytest.approx(0.0, abs=1e-12)  # the EWMA walk against itself
    assert summary["train_vol_crps_skill"] > 0.1


# --------------------------------------------------------------------------- scale-free pooling


def test_log_return_skill_weighs_every_period_alike():
    """The same relative errors at prices 100 and 10,000: in price units the dear half decides
    the skill; in log-returns each half counts as much as the other."""
    rng = np.random.default_rng(2)
    moves = rng.normal(0, 0.02, 400)
    level = np.r_[np.full(200, 100.0), np.full(200, 10_000.0)]
    last = level
    actual = last * np.exp(moves)
    # the model is good early (half the error of persistence) and bad late (twice it)
    predicted = last * np.exp(np.r_[moves[:200] * 0.5, -moves[200:]])
    price_skill = stats.skill(actual, predicted, last)
    log_skill = stats.skill(*stats.log_returns(actual, predicted, last))
    early = stats.skill(*stats.log_returns(actual[:200], predicted[:200], last[:200]))
    late = stats.skill(*stats.log_returns(actual[200:], predicted[200:], last[200:]))
    assert price_skill == pytest.approx(late, abs=0.01)  # the early half is invisible in dollars
    assert late < log_skill < early and abs(log_skill - price_skill) > 0.1
    # and the log-return numbers do not care about the price level at all
    assert stats.skill(*stats.log_returns(actual * 7, predicted * 7, last * 7)) == pytest.approx(log_skill)
    row = stats.compare_with_persistence(actual, predicted, last, 1.0)
    assert row["log_return_skill"] == pytest.approx(log_skill) and row["skill"] == pytest.approx(price_skill)
