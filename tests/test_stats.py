"""Gate statistics: PSR/DSR against closed forms, a published example and simulation; MinTRL consistency; block-bootstrap
coverage and paired-test size/power; Diebold–Mariano size, power and agreement with statsmodels' HAC; PBO on noise and
on a planted signal; bad input (NaN, inf, short and constant series)."""
import math
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats as sps
import statsmodels.api as sm
from yooptx.core import UserError
from yooptx.stats import (MIN_OBS, StatsError, sharpe_rows, sharpe_se, psr_from_moments, probabilistic_sharpe,
                          expected_max_sharpe, deflated_sharpe, min_trl_from_moments, min_track_record)
from yooptx.resampling import (optimal_block_length, block_indices, bootstrap_ci, paired_bootstrap_test, newey_west_lrv,
                               diebold_mariano, pbo, seed_dispersion)


def gauss(n, sr=0.0, seed=0, vol=0.01):
    "n iid normal returns with per-period Sharpe `sr`."
    return vol * (sr + np.random.default_rng(seed).standard_normal(n))


def ar1(n, phi, rng):
    e = rng.standard_normal(n); x = np.empty(n); x[0] = e[0] / math.sqrt(1 - phi**2)
    for t in range(1, n): x[t] = phi * x[t - 1] + e[t]
    return x


# ---------------------------------------------------------------- PSR / DSR / MinTRL

def test_psr_gaussian_closed_form():
    # normal returns: skew 0, kurtosis 3 -> se = sqrt((1 + SR^2/2) / (T - 1))
    for sr, n in [(0.05, 252), (0.1, 1000), (-0.03, 60)]:
        want = sps.norm.cdf(sr * math.sqrt(n - 1) / math.sqrt(1 + sr**2 / 2))
        assert psr_from_moments(sr, n) == pytest.approx(want, rel=1e-12)
    r = gauss(500, 0.08, seed=1)
    res = probabilistic_sharpe(r, sr_benchmark=0.02)
    sr = r.mean() / r.std(ddof=1)
    sk, ku = sps.skew(r), sps.kurtosis(r, fisher=False)      # non-excess kurtosis, as in Bailey & López de Prado
    se = math.sqrt((1 - sk * sr + (ku - 1) / 4 * sr**2) / (r.size - 1))
    assert res.sr == pytest.approx(sr) and res.kurtosis == pytest.approx(ku) and res.skew == pytest.approx(sk)
    assert res.psr == pytest.approx(sps.norm.cdf((sr - 0.02) / se), rel=1e-10)
    assert 2.5 < res.kurtosis < 3.5                          # normal data: kurtosis ≈ 3 (non-excess), not ≈ 0


@pytest.mark.parametrize('kind', ['normal', 'skewed'])
def test_sharpe_se_matches_simulated_sampling_distribution(kind):
    # the PSR's standard error should be the spread of the Sharpe estimate across samples, also for skewed, fat-tailed returns
    rng = np.random.default_rng(11)
    T, reps, sr_true = 250, 4000, 0.15
    if kind == 'normal':
        x = rng.standard_normal((reps, T)); skew, kurt = 0.0, 3.0
    else:
        x = rng.exponential(1.0, (reps, T)) - 1.0; skew, kurt = 2.0, 9.0   # exponential: skew 2, kurtosis 9
    x = x + sr_true                                          # unit std, so per-period Sharpe = sr_true
    est = sharpe_rows(x)
    assert est.std() == pytest.approx(float(sharpe_se(sr_true, T, skew, kurt)), rel=0.06)
    if kind == 'skewed':                                     # the Gaussian formula would be clearly off here
        assert abs(est.std() / float(sharpe_se(sr_true, T)) - 1) > 0.1
    # calibration: with the benchmark at the true Sharpe, P(PSR > 0.95) ≈ 5 %
    sk = sps.skew(x, axis=1); ku = sps.kurtosis(x, axis=1, fisher=False)
    p = psr_from_moments(est, T, sk, ku, sr_true)
    assert 0.03 < np.mean(p > 0.95) < 0.075


def test_dsr_published_example():
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example: N = 100 trials, variance of the
    # annualized trial Sharpes 1/2, best annualized SR 2.5 on T = 1250 daily returns (250 a year), skew -3, kurtosis 10
    # -> SR0 ≈ 0.1132 per period, DSR ≈ 0.9004 (their rounding; the closed form gives 0.9002-0.9003).
    sr0 = expected_max_sharpe(100, math.sqrt(0.5 / 250))
    assert sr0 == pytest.approx(0.1132, abs=2e-4)
    assert psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0) == pytest.approx(0.9004, abs=1e-3)


def test_dsr_from_series_and_monotonicity():
    r = gauss(756, 0.12, seed=3)
    base = probabilistic_sharpe(r)
    one = deflated_sharpe(r, n_trials=1, trial_sharpe_std=0.05)
    assert one.sr0 == 0.0 and one.dsr == pytest.approx(base.psr) and one.psr == pytest.approx(base.psr)
    d = deflated_sharpe(r, 24, 0.03, annualization=252)
    assert d.dsr == pytest.approx(psr_from_moments(d.sr, d.n, d.skew, d.kurtosis, expected_max_sharpe(24, 0.03)))
    assert d.sr_annualized == pytest.approx(d.sr * math.sqrt(252)) and d.sr0_annualized == pytest.approx(d.sr0 * math.sqrt(252))
    by_n = [deflated_sharpe(r, n, 0.03).dsr for n in (1, 2, 10, 100, 1000)]
    by_sd = [deflated_sharpe(r, 50, s).dsr for s in (0.0, 0.01, 0.03, 0.06)]
    assert all(a > b for a, b in zip(by_n, by_n[1:])) and all(a > b for a, b in zip(by_sd, by_sd[1:]))
    assert by_sd[0] == pytest.approx(base.psr)               # no dispersion across trials: nothing to deflate
    with pytest.raises(StatsError, match='n_trials'): deflated_sharpe(r, 0, 0.03)
    with pytest.raises(StatsError, match='trial_sharpe_std'): deflated_sharpe(r, 5, -0.1)


@pytest.mark.parametrize('n_trials,reps', [(10, 400), (100, 80), (1000, 16)])
def test_expected_max_sharpe_vs_simulation(n_trials, reps):
    # the best of N null trials' Sharpe estimates (T returns each) vs the formula fed their cross-trial std
    rng = np.random.default_rng(n_trials)
    sr = sharpe_rows(rng.standard_normal((reps, n_trials, 250)))       # (reps, trials)
    emp = sr.max(1).mean()
    assert expected_max_sharpe(n_trials, sr.std(axis=1, ddof=1).mean()) == pytest.approx(emp, rel=0.05)


def test_min_trl_consistent_with_psr():
    r = np.random.default_rng(4).standard_t(5, 1000) * 0.01 + 0.001
    m = min_track_record(r, sr_benchmark=0.01, confidence=0.9, annualization=252)
    assert np.isfinite(m.min_trl) and m.min_trl_years == pytest.approx(m.min_trl / 252)
    assert psr_from_moments(m.sr, m.min_trl, m.skew, m.kurtosis, 0.01) == pytest.approx(0.9, abs=1e-9)
    # a longer record than MinTRL clears the bar, a shorter one does not (moments held fixed)
    assert psr_from_moments(m.sr, m.min_trl * 1.2, m.skew, m.kurtosis, 0.01) > 0.9 > psr_from_moments(m.sr, m.min_trl * 0.8, m.skew, m.kurtosis, 0.01)
    assert m.enough == (m.n >= m.min_trl)
    assert min_trl_from_moments(0.01, sr_benchmark=0.02) == math.inf
    with pytest.raises(StatsError, match='confidence'): min_trl_from_moments(0.1, confidence=1.5)


# ---------------------------------------------------------------- bootstrap

def test_block_indices_shapes_and_mean_block():
    rng = np.random.default_rng(0)
    idx = block_indices(400, 300, 8.0, rng, 'stationary')
    assert idx.shape == (300, 400) and idx.min() >= 0 and idx.max() < 400
    assert 1 / np.mean(np.diff(idx, axis=1) % 400 != 1) == pytest.approx(8.0, rel=0.05)
    mb = block_indices(100, 50, 7, rng, 'moving')
    assert mb.shape == (50, 100) and mb.max() < 100
    assert (np.diff(mb[:, :7], axis=1) == 1).all()           # first block is 7 consecutive bars
    with pytest.raises(StatsError, match='scheme'): block_indices(10, 2, 2, rng, 'circular')


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 60), block=st.floats(1, 60), scheme=st.sampled_from(['stationary', 'moving']), seed=st.integers(0, 99))
def test_block_indices_always_in_range(n, block, scheme, seed):
    idx = block_indices(n, 5, min(block, n), np.random.default_rng(seed), scheme)
    assert idx.shape == (5, n) and idx.min() >= 0 and idx.max() < n


def test_politis_white_block_length():
    # AR(1): the optimal stationary-bootstrap block is (2 phi / (1 - phi^2))^(2/3) n^(1/3) (Politis & White 2004)
    n, phi = 2000, 0.5
    want = (2 * phi / (1 - phi**2)) ** (2 / 3) * n ** (1 / 3)
    got = [optimal_block_length(ar1(n, phi, np.random.default_rng(s))) for s in range(6)]
    assert np.median(got) == pytest.approx(want, rel=0.3)
    assert np.median([optimal_block_length(np.random.default_rng(s).standard_normal(n)) for s in range(6)]) < 2.5
    assert optimal_block_length(np.ones(50)) == 1.0


def test_bootstrap_ci_sharpe_coverage_iid():
    sr_true, reps, T = 0.1, 200, 250
    hits = 0
    for i in range(reps):
        ci = bootstrap_ci(gauss(T, sr_true, seed=1000 + i), 'sharpe', n_boot=400, seed=i)
        hits += ci.low <= sr_true <= ci.high
    assert 0.89 <= hits / reps <= 1.0


def test_bootstrap_blocks_matter_for_dependent_data():
    # mean of an AR(1): the automatic block length keeps coverage near nominal; single-bar resampling does not
    reps, T = 150, 500
    auto = iid = 0
    for i in range(reps):
        x = ar1(T, 0.5, np.random.default_rng(2000 + i))
        auto += (c := bootstrap_ci(x, 'mean', n_boot=400, seed=i)).low <= 0 <= c.high
        iid += (c := bootstrap_ci(x, 'mean', n_boot=400, seed=i, block=1)).low <= 0 <= c.high
    assert auto / reps >= 0.85 and iid / reps <= 0.8


def test_bootstrap_ci_options_and_determinism():
    r = gauss(300, 0.1, seed=5)
    a, b = bootstrap_ci(r, seed=3, n_boot=500), bootstrap_ci(r, seed=3, n_boot=500)
    assert (a.low, a.high) == (b.low, b.high) and a.block_rule == 'politis-white'
    assert a.estimate == pytest.approx(r.mean() / r.std(ddof=1))
    mean_ci = bootstrap_ci(r, 'mean', n_boot=2000, block=1)
    assert mean_ci.se == pytest.approx(r.std() / math.sqrt(r.size), rel=0.1)   # bootstrap se of a mean ≈ s / sqrt(n)
    bca = bootstrap_ci(r, 'mean', n_boot=2000, block=1, method='bca')
    assert bca.low == pytest.approx(mean_ci.low, rel=0.1) and bca.high == pytest.approx(mean_ci.high, rel=0.1)
    mb = bootstrap_ci(r, n_boot=300, scheme='moving', block=10, annualization=252)
    assert mb.block == 10 and mb.high_annualized == pytest.approx(mb.high * math.sqrt(252))
    custom = bootstrap_ci(r, lambda x: np.percentile(x, 50, axis=-1), n_boot=300)
    assert custom.estimate == pytest.approx(np.median(r))
    with pytest.raises(StatsError, match='reduce the last axis'): bootstrap_ci(r, lambda x: x, n_boot=200)
    with pytest.raises(StatsError, match='block'): bootstrap_ci(r, block=0.5)
    with pytest.raises(StatsError, match='n_boot'): bootstrap_ci(r, n_boot=10)
    with pytest.raises(StatsError, match='method'): bootstrap_ci(r, method='studentized')
    diff = bootstrap_ci(r - gauss(300, 0.0, seed=6), 'mean', n_boot=300)   # difference of two strategies
    assert diff.low < diff.estimate < diff.high


def test_paired_bootstrap_size_and_power():
    rng = np.random.default_rng(8)
    T, reps = 250, 150
    null_p, alt_p = [], []
    for i in range(reps):
        common = rng.standard_normal(T)
        b = 0.01 * (0.05 + 0.6 * common + 0.8 * rng.standard_normal(T))
        a = 0.01 * (0.05 + 0.6 * common + 0.8 * rng.standard_normal(T))
        null_p.append(paired_bootstrap_test(a, b, n_boot=400, seed=i, block=1).p_value)
        alt_p.append(paired_bootstrap_test(a + 0.01 * 0.25, b, n_boot=400, seed=i, block=1).p_value)
    size, power = np.mean(np.array(null_p) < 0.05), np.mean(np.array(alt_p) < 0.05)
    assert 0.01 <= size <= 0.10 and power >= 0.8
    res = paired_bootstrap_test(a + 0.01 * 0.25, b, n_boot=400)
    assert res.diff == pytest.approx(res.stat_a - res.stat_b) and res.low < res.diff < res.high


# ---------------------------------------------------------------- Diebold–Mariano

@pytest.mark.parametrize('h', [1, 4])
def test_dm_matches_statsmodels_hac(h):
    rng = np.random.default_rng(h)
    la, lb = rng.standard_normal(300) ** 2, 1.1 * rng.standard_normal(300) ** 2
    res = diebold_mariano(la, lb, h=h)
    ols = sm.OLS(la - lb, np.ones(300)).fit(cov_type='HAC', cov_kwds={'maxlags': h - 1, 'use_correction': False})
    assert res.dm_raw == pytest.approx(ols.tvalues[0], rel=1e-10)
    hln = math.sqrt((300 + 1 - 2 * h + h * (h - 1) / 300) / 300)
    assert res.stat == pytest.approx(ols.tvalues[0] * hln)
    assert res.p_value == pytest.approx(sps.t.cdf(res.stat, 299)) and res.p_two_sided == pytest.approx(2 * sps.t.sf(abs(res.stat), 299))
    assert newey_west_lrv(la - lb, h - 1) == pytest.approx(res.lrv)


def test_dm_size_under_null_and_power():
    rng = np.random.default_rng(9)
    T, reps = 250, 400
    rej_two = rej_one = rej_h = power = 0
    for _ in range(reps):
        ea, eb = rng.standard_normal(T), rng.standard_normal(T)            # equally accurate forecasts
        r = diebold_mariano(ea**2, eb**2)
        rej_two += r.p_two_sided < 0.05; rej_one += r.p_value < 0.05
        # 3-step forecasts: errors are MA(2), so the loss differential is autocorrelated
        u, v = rng.standard_normal(T + 2), rng.standard_normal(T + 2)
        ma_a, ma_b = np.convolve(u, [1, .7, .4], 'valid'), np.convolve(v, [1, .7, .4], 'valid')
        rej_h += diebold_mariano(np.abs(ma_a), np.abs(ma_b), h=3).p_two_sided < 0.05
        power += diebold_mariano(ea**2, (1.3 * eb) ** 2).p_value < 0.05
    assert 0.02 <= rej_two / reps <= 0.09 and 0.02 <= rej_one / reps <= 0.09
    assert 0.02 <= rej_h / reps <= 0.11
    assert power / reps >= 0.8


# ---------------------------------------------------------------- PBO

def test_pbo_noise_vs_signal():
    noise_pbo, sig_pbo = [], []
    for s in range(3):
        x = 0.01 * np.random.default_rng(s).standard_normal((1000, 20))
        noise_pbo.append(pbo(x).pbo)
        x[:, 3] += 0.01 * 0.2                                              # one trial with per-period Sharpe 0.2
        sig = pbo(x)
        sig_pbo.append(sig.pbo)
        assert sig.prob_oos_loss < 0.05
    assert min(noise_pbo) >= 0.3 and 0.35 <= np.mean(noise_pbo) <= 0.65
    assert max(sig_pbo) <= 0.1


def test_pbo_by_hand_two_trials_two_splits():
    # S = 2 splits, 2 trials: combinations {block0 IS} and {block1 IS}. Trial 0 wins block 0, trial 1 wins block 1,
    # so each IS winner is the worse trial OOS: rank 1 of 2 -> omega = 1/3 -> logit log(1/2) < 0 -> PBO = 1.
    t0 = np.r_[[0.02, 0.03, 0.025, 0.021, 0.03], [-0.01, 0.0, -0.02, 0.01, -0.015]]
    t1 = np.r_[[-0.01, 0.0, -0.02, 0.01, -0.015], [0.02, 0.03, 0.025, 0.021, 0.03]]
    res = pbo(np.c_[t0, t1], n_splits=2)
    assert res.n_combinations == 2 and res.pbo == 1.0
    np.testing.assert_allclose(res.logits, math.log(0.5))
    res = pbo(np.c_[t0, t0 - 0.05], n_splits=2)                            # trial 0 dominates: rank 2 of 2 -> PBO 0
    assert res.pbo == 0.0 and res.logits == pytest.approx([math.log(2)] * 2)


def test_pbo_settings_skips_and_inputs():
    x = 0.01 * np.random.default_rng(1).standard_normal((600, 6))
    full = pbo(x, n_splits=10)
    assert full.n_combinations == math.comb(10, 5) == full.logits.size and full.n_splits == 10
    capped = pbo(x, n_splits=16, max_combinations=500, seed=4)
    assert capped.n_combinations == 500 and capped.pbo == pbo(x, n_splits=16, max_combinations=500, seed=4).pbo
    assert pbo(x[:50]).n_splits == 10                                      # 50 bars / 5 per block
    assert pbo(x[:, :1]).pbo is None and pbo(x[:, :1]).reason == 'needs >= 2 trials, got 1'
    short = pbo(x[:9])
    assert short.pbo is None and 'needs >= 10 bars' in short.reason
    y = x.copy(); y[:20, 2] = np.nan                                       # a trial that started late
    assert pbo(y).n_nan == 20 and pbo(y).n_bars == 580
    frame = pl.DataFrame({'timestamp': np.arange(600), **{f't{i}': x[:, i] for i in range(6)}})
    assert pbo(frame).pbo == pbo(x).pbo and pbo(frame).n_trials == 6
    with pytest.raises(StatsError, match='non-numeric column'): pbo(frame.with_columns(symbol=pl.lit('A')))
    with pytest.raises(StatsError, match='even'): pbo(x, n_splits=7)
    with pytest.raises(StatsError, match='2-D'): pbo(x[:, 0])
    z = x.copy(); z[:, 0] = 0.0                                            # a trial that never trades
    assert 0 <= pbo(z).pbo <= 1


# ---------------------------------------------------------------- seeds and bad input

def test_seed_dispersion():
    d = seed_dispersion({0: 1.0, 1: 0.5, 2: -0.5, 3: 2.0})
    assert (d.n, d.mean, d.min, d.max, d.share_positive) == (4, 0.75, -0.5, 2.0, 0.75)
    assert d.std == pytest.approx(np.std([1.0, 0.5, -0.5, 2.0], ddof=1)) and d.cv == pytest.approx(d.std / 0.75)
    assert seed_dispersion(pl.Series([0.3, None, 0.5])).n_nan == 1
    with pytest.raises(StatsError): seed_dispersion([])


def test_nan_inf_short_and_constant_inputs():
    r = gauss(100, 0.1, seed=2); r[[3, 50]] = np.nan
    res = probabilistic_sharpe(r)
    assert res.n == 98 and res.n_nan == 2
    assert res.psr == pytest.approx(probabilistic_sharpe(r[~np.isnan(r)]).psr)
    assert bootstrap_ci(r, n_boot=200).n_nan == 2
    assert probabilistic_sharpe(pl.Series(r).fill_nan(None)).n == 98
    bad = r.copy(); bad[0] = np.inf
    with pytest.raises(StatsError, match='infinite'): probabilistic_sharpe(bad)
    with pytest.raises(UserError, match=f'at least {MIN_OBS}'): probabilistic_sharpe([0.01, 0.02, 0.0])
    with pytest.raises(StatsError, match='at least'): diebold_mariano(np.ones(6), np.zeros(6), h=4)
    with pytest.raises(StatsError, match='aligned'): diebold_mariano(np.ones(20), np.zeros(21))
    with pytest.raises(StatsError, match='1-D'): probabilistic_sharpe(np.zeros((10, 2)))
    # constant series: no division by zero, sensible limits
    flat = np.zeros(50)
    assert probabilistic_sharpe(flat).psr == 0.5 and 'constant' in probabilistic_sharpe(flat).note
    assert deflated_sharpe(flat, 10, 0.05).dsr < 0.5
    assert probabilistic_sharpe(np.full(50, 1e-3)).sr == math.inf and probabilistic_sharpe(np.full(50, -1e-3)).psr == 0.0
    assert min_track_record(flat).min_trl == math.inf
    ci = bootstrap_ci(flat, n_boot=200)
    assert ci.low == ci.high == 0.0
    dm = diebold_mariano(np.ones(30), np.ones(30))
    assert dm.stat == 0.0 and dm.p_two_sided == 1.0 and 'constant' in dm.note
    assert diebold_mariano(np.zeros(30), np.ones(30)).p_value == 0.0
    assert paired_bootstrap_test(flat, flat, n_boot=200).p_value >= 0.5
    assert optimal_block_length(flat) == 1.0


def test_to_dict_is_json_ready():
    import json
    res = pbo(0.01 * np.random.default_rng(0).standard_normal((200, 4)))
    d = res.to_dict()
    assert 'logits' not in d and json.loads(json.dumps(d))['n_trials'] == 4
    assert len(res.to_dict(arrays=True)['logits']) == res.n_combinations
    json.dumps(deflated_sharpe(gauss(100, 0.1), 5, 0.02).to_dict())
