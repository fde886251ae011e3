"""Statistical checks of yooptx.synth by simulation: the null market is unpredictable, its options do what they say,
and planted signals give the oracle the Sharpe ratio they promise. Seeds are fixed, so every run is the same run."""
import math

import numpy as np
import polars as pl
import pytest

from yooptx.calendars import bars_per_year
from yooptx.synth import _ar_equal_weights_acov, _corr_factor, _mix, oracle_positions, planted_signal, random_walk, signal_params

CHI2_10_95 = 18.307          # 95% quantile of chi-square with 10 degrees of freedom (Ljung-Box with 10 lags)
N_SEEDS, MAX_REJECT = 20, 4  # 20 seeds at 5%: P(>= 5 rejections) = 1.6% under the null


def _panel(bars: pl.DataFrame, col: str) -> np.ndarray:
    "Column `col` as a (time, symbol) array (bars are sorted by symbol, then time, every symbol on the same grid)."
    S = bars['symbol'].n_unique()
    return bars[col].to_numpy().reshape(S, -1).T


def _returns(bars: pl.DataFrame) -> np.ndarray:
    "Log close-to-close returns (time, symbol); the first is log(close_0 / open_0)."
    c, o = _panel(bars, 'close'), _panel(bars, 'open')
    return np.vstack([np.log(c[:1] / o[:1]), np.diff(np.log(c), axis=0)])


def _acf(x: np.ndarray, k: int) -> float:
    x = x - x.mean()
    return float((x[k:] * x[:-k]).sum() / (x * x).sum())


def _ljung_box(x: np.ndarray, m: int = 10) -> float:
    T = len(x)
    return T * (T + 2) * sum(_acf(x, k) ** 2 / (T - k) for k in range(1, m + 1))


def _robust_ljung_box(x: np.ndarray, m: int = 10) -> float:
    "Portmanteau statistic that stays chi-square(m) for uncorrelated but heteroskedastic series (GARCH, intraday U shape)."
    x = x - x.mean()
    return float(sum((x[k:] * x[:-k]).sum() ** 2 / (x[k:] ** 2 * x[:-k] ** 2).sum() for k in range(1, m + 1)))


def _sr(pnl: np.ndarray) -> float:
    return float(pnl.mean() / pnl.std())


def _se(sr: float, T: int) -> float:
    "Standard error of a per-period Sharpe estimate from T observations (Lo 2002, i.i.d. normal returns)."
    return math.sqrt((1 + sr * sr / 2) / T)


# ---------------------------------------------------------------- the null market

NULLS = {
    'normal daily': dict(freq='1D', n_bars=5000),
    't(4) + GARCH daily': dict(freq='1D', n_bars=5000, tails='t', df=4.0, garch=(0.1, 0.85)),
    '15m U shape + gaps': dict(freq='15m', n_bars=26 * 200, overnight=0.2, garch=(0.05, 0.9)),
}


@pytest.mark.parametrize('name', list(NULLS))
def test_random_walk_is_unpredictable(name):
    kw = NULLS[name]
    lb = lbr = lbs = pers = 0
    srs = []
    for seed in range(N_SEEDS):
        r = _returns(random_walk(seed=seed, **kw))[:, 0]
        s = np.sign(r)
        lb += _ljung_box(r) > CHI2_10_95
        lbr += _robust_ljung_box(r) > CHI2_10_95
        lbs += _ljung_box(s) > CHI2_10_95     # signs are i.i.d. +-1 under every option: the plain test is exact
        pnl = s[:-1] * r[1:]                  # lag-1 sign persistence: long after an up bar, short after a down bar
        srs.append(_sr(pnl))
        pers += abs(srs[-1]) > 1.96 * _se(0.0, len(pnl))
    print(f"{name}: rejections at 5% of {N_SEEDS} seeds: Ljung-Box {lb}, robust {lbr}, signs {lbs}, persistence {pers}; "
          f"mean persistence Sharpe/bar {np.mean(srs):+.4f}")
    assert lbr <= MAX_REJECT and lbs <= MAX_REJECT and pers <= MAX_REJECT
    if name == 'normal daily': assert lb <= MAX_REJECT   # the classical statistic needs homoskedastic returns
    assert abs(np.mean(srs)) < 3 * _se(0.0, N_SEEDS * (kw['n_bars'] - 1))


def test_garch_clusters_volatility_not_returns():
    T = 20_000
    rg = _returns(random_walk(T, n_symbols=5, seed=11, garch=(0.1, 0.85)))
    r0 = _returns(random_walk(T, n_symbols=5, seed=11))
    a = 0.1; b = 0.85
    rho1 = a * (1 - a * b - b * b) / (1 - 2 * a * b - b * b)   # GARCH(1,1) lag-1 autocorrelation of squared returns: 0.179
    acf_g = [_acf(rg[:, i] ** 2, 1) for i in range(5)]
    acf_0 = [_acf(r0[:, i] ** 2, 1) for i in range(5)]
    print(f"acf1 of r^2: GARCH {np.round(acf_g, 3)} (theory {rho1:.3f}); i.i.d. {np.round(acf_0, 3)}")
    assert min(acf_g) > 5 / math.sqrt(T) and abs(np.mean(acf_g) - rho1) < 0.06
    assert max(abs(x) for x in acf_0) < 4 / math.sqrt(T)
    assert sum(_robust_ljung_box(rg[:, i]) > CHI2_10_95 for i in range(5)) <= 1


def _excess_kurtosis(x):
    x = x - x.mean()
    return float((x ** 4).mean() / (x ** 2).mean() ** 2 - 3)


def test_tails():
    T = 20_000
    kt = [_excess_kurtosis(x) for x in _returns(random_walk(T, n_symbols=5, seed=4, tails='t', df=5.0)).T]
    kn = [_excess_kurtosis(x) for x in _returns(random_walk(T, n_symbols=5, seed=4)).T]
    kg = [_excess_kurtosis(x) for x in _returns(random_walk(T, n_symbols=5, seed=4, garch=(0.1, 0.85))).T]
    print(f"excess kurtosis: t(5) {np.round(kt, 2)} (theory 6), normal {np.round(kn, 3)}, GARCH normal {np.round(kg, 2)} (theory 0.77)")
    assert min(kt) > 1.5
    assert max(abs(k) for k in kn) < 5 * math.sqrt(24 / T)
    assert min(kg) > 0.2


VOLS = {
    'normal daily': dict(freq='1D', n_bars=5000, ann_vol=0.2),
    't(5) + GARCH daily': dict(freq='1D', n_bars=5000, ann_vol=0.35, tails='t', df=5.0, garch=(0.08, 0.9)),
    '15m U shape + gaps': dict(freq='15m', n_bars=26 * 250, ann_vol=0.2, overnight=0.25),
    '1h short last bar': dict(freq='1h', n_bars=7 * 500, ann_vol=0.15),
    '24/7 1h': dict(freq='1h', n_bars=24 * 365, ann_vol=0.8, calendar='24/7'),
}


@pytest.mark.parametrize('name', list(VOLS))
def test_annualized_vol(name):
    kw = VOLS[name]
    bars = random_walk(n_symbols=20, seed=5, **kw)
    vols = _returns(bars).std(axis=0) * math.sqrt(bars_per_year(kw.get('calendar', 'XNYS'), kw['freq']))
    se = vols.std() / math.sqrt(len(vols))
    print(f"{name}: annualized vol {vols.mean():.4f} ± {se:.4f} (target {kw['ann_vol']})")
    assert abs(vols.mean() - kw['ann_vol']) < 3 * se + 0.002 * kw['ann_vol']


@pytest.mark.parametrize('tails', ['normal', 't'])
def test_correlation(tails):
    r = _returns(random_walk(10_000, n_symbols=4, seed=6, corr=0.5, tails=tails))
    c = np.corrcoef(r.T)[np.triu_indices(4, 1)]
    print(f"{tails}: pairwise correlations {np.round(c, 3)} (target 0.5)")
    assert abs(c.mean() - 0.5) < 0.02 and abs(c - 0.5).max() < 0.05



@pytest.mark.parametrize('corr,tol', [(0.3, 0.04), (-0.9 / 299, 0.004)])
def test_correlation_many_symbols(corr, tol):
    "300 symbols (one near the lowest allowed correlation): every symbol, first or last, gets the target correlation."
    S, T = 300, 4000
    r = _returns(random_walk(T, n_symbols=S, seed=12, corr=corr))
    z = (r - r.mean(axis=0)) / r.std(axis=0)
    var_ratio = z.mean(axis=1).var() * S / (1 + (S - 1) * corr)    # Var(mean of S equicorrelated) = (1 + (S-1)corr) / S
    c = np.corrcoef(r.T); np.fill_diagonal(c, np.nan)
    per_symbol = np.nanmean(c, axis=1)
    print(f"corr {corr:+.4f}: variance ratio of the cross-sectional mean {var_ratio:.3f} (1 expected), "
          f"per-symbol mean correlation {per_symbol.min():+.4f}..{per_symbol.max():+.4f}, first 10 vs last 10 {np.nanmean(c[:10, -10:]):+.4f}")
    assert abs(var_ratio - 1) < 4 * math.sqrt(2 / T)
    assert np.abs(per_symbol - corr).max() < tol


@pytest.mark.parametrize('corr,S', [(0.5, 500), (-0.99 / 499, 500), (0.95, 50), (0.0, 20)])
def test_corr_factor_is_the_cholesky_factor(corr, S):
    "The O(S) closed form equals LAPACK's dense Cholesky factor, and mixing with it equals the dense product."
    d, c = _corr_factor(corr, S)
    L = np.linalg.cholesky(np.full((S, S), corr) + (1 - corr) * np.eye(S))
    lo = np.tril_indices(S, -1)
    np.testing.assert_allclose(d, np.diag(L), rtol=1e-11)
    np.testing.assert_allclose(c[lo[1]], L[lo], rtol=1e-9, atol=1e-15)
    g = np.random.default_rng(0).standard_normal((200, S))
    np.testing.assert_allclose(_mix(g, d, c), g @ L.T, rtol=0, atol=1e-12)
    if corr == 0: assert np.array_equal(_mix(g, d, c), g)         # uncorrelated: the draws themselves, bit for bit


def test_volume_sizes_not_signs():
    bars = random_walk(20_000, n_symbols=3, seed=8)
    r, lv = _returns(bars), np.log(_panel(bars, 'volume'))
    T = r.shape[0] * r.shape[1]
    size = np.mean([np.corrcoef(lv[:, i], np.abs(r[:, i]))[0, 1] for i in range(3)])
    nxt = np.corrcoef(lv[:-1].ravel(), r[1:].ravel())[0, 1]
    signed = np.corrcoef((lv[:-1] * np.sign(r[:-1])).ravel(), r[1:].ravel())[0, 1]
    print(f"corr(log volume, |r|) {size:.3f}; corr(log volume_t, r_t+1) {nxt:+.4f}; corr(log volume_t * sign r_t, r_t+1) {signed:+.4f}")
    assert size > 0.3 and abs(nxt) < 4 / math.sqrt(T) and abs(signed) < 4 / math.sqrt(T)
    iv = random_walk(26 * 100, seed=8, freq='15m')
    tod = iv['timestamp'].dt.strftime('%H:%M')
    by = iv.with_columns(tod=tod).group_by('tod').agg(pl.col('volume').median()).sort('tod')
    print(f"median 15m volume by time of day: open {by['volume'][0]:.3g}, midday {by['volume'][12]:.3g}, close {by['volume'][-1]:.3g}")
    assert by['volume'][0] > 1.5 * by['volume'][12] and by['volume'][-1] > 1.5 * by['volume'][12]


@pytest.mark.parametrize('kw', [dict(), dict(freq='5m', tails='t', garch=(0.1, 0.8), corr=0.3, overnight=0.3), dict(freq='1h', calendar='24/7')])
def test_ohlc_and_prefix(kw):
    long = random_walk(1000, n_symbols=3, seed=9, **kw)
    assert long.select(((pl.col('low') <= pl.min_horizontal('open', 'close')) & (pl.col('high') >= pl.max_horizontal('open', 'close'))
                        & (pl.col('low') > 0) & (pl.col('volume') > 0)).all()).item()
    short = random_walk(300, n_symbols=3, seed=9, **kw)
    assert short.equals(long.filter(pl.col('timestamp').rank('dense') <= 300))   # bars never depend on later draws


# ---------------------------------------------------------------- planted signals

CASES = [(kind, sharpe, freq) for kind in ('momentum', 'pattern') for sharpe in (0.5, 1.5, 3.0) for freq in ('1D', '15m')]
SIZES = {'1D': (10_000, 20), '15m': (26 * 252 * 4, 40)}   # (bars, symbols): 200k and 1.05M oracle bets


def _pnl(pos: np.ndarray, r: np.ndarray, delay: int = 0) -> np.ndarray:
    "Pooled pnl of holding pos_t (decided at bar t's close) over bar t+1, optionally `delay` bars late."
    p = pos[:-1 - delay] if delay else pos[:-1]
    return (p * r[1 + delay:]).ravel()


@pytest.mark.parametrize('kind,sharpe,freq', CASES)
def test_oracle_sharpe(kind, sharpe, freq):
    n, S = SIZES[freq]
    bars, oracle, info = planted_signal(n, n_symbols=S, seed=21, sharpe=sharpe, kind=kind, freq=freq, return_oracle=True)
    ann = math.sqrt(info['bars_per_year'])
    r, pos = _returns(bars), oracle['position'].to_numpy().reshape(S, -1).T
    pnl = _pnl(pos, r)
    sr, se = _sr(pnl), _se(info['sharpe_per_bar'], len(pnl))
    late = _sr(_pnl(pos, r, delay=1))
    shuffled = _sr(_pnl(np.random.default_rng(0).permuted(pos, axis=0), r))
    if kind == 'momentum':   # one bar late, the k-bar mean still overlaps k-1 returns: predict what it keeps
        k = info['lookback']
        g = _ar_equal_weights_acov(info['coef'], k)
        g = list(g) + [0.0] * 2
        for h in range(k + 1, k + 3): g[h] = info['lag_weight'] * sum(g[h - j] for j in range(1, k + 1))
        g = np.array(g) * info['noise_sd'] ** 2
        m = math.sqrt(2 / math.pi) * np.mean(g[2:k + 2]) / info['signal_sd']   # E[sign(x_{t-1}) r_{t+1}]
        late_expected = m / math.sqrt(g[0] - m * m)
    else: late_expected = 0.0
    print(f"{kind} {freq} target {sharpe}: oracle {sr * ann:.3f} ± {se * ann:.3f}, one bar late {late * ann:+.3f} "
          f"(expected {late_expected * ann:+.3f}), shuffled {shuffled * ann:+.3f}  [T={len(pnl)}]")
    assert abs(sr - info['sharpe_per_bar']) < 3 * se
    assert abs(late - late_expected) < 3 * se
    assert abs(shuffled) < 3 * se
    if kind == 'pattern': assert late < sr - 3 * se    # the interaction is gone one bar later
    else: assert late_expected < 0.9 * info['sharpe_per_bar']   # waiting one bar loses edge (too little to see at low Sharpe)


def test_oracle_uses_only_the_past():
    for kind in ('momentum', 'pattern'):
        bars, oracle, _ = planted_signal(400, n_symbols=2, seed=3, kind=kind, return_oracle=True)
        for cut in (1, 2, 5, 57, 399):
            part = bars.filter(pl.col('timestamp').rank('dense') <= cut)
            assert oracle_positions(part, kind)['position'].to_list() == oracle.filter(pl.col('timestamp').rank('dense') <= cut)['position'].to_list()
        short = planted_signal(150, n_symbols=2, seed=3, kind=kind)
        assert short.equals(bars.filter(pl.col('timestamp').rank('dense') <= 150))   # bars <= t never see draws of t+1


def _linear_oos_sharpe(r: np.ndarray, k: int = 10) -> float:
    "Per-bar Sharpe, on the second half, of sign(OLS forecast of r_{t+1} from r_t..r_{t-k+1}) fit on the first half."
    n, S = r.shape
    X = np.stack([r[k - 1 - j:n - 1 - j] for j in range(k)], axis=-1)   # (n-k, S, k): lags 1..k of the target
    y = r[k:]
    half = (n - k) // 2
    Xtr, ytr = X[:half].reshape(-1, k), y[:half].ravel()
    beta, *_ = np.linalg.lstsq(np.column_stack([np.ones(len(Xtr)), Xtr]), ytr, rcond=None)
    pred = beta[0] + X[half:] @ beta[1:]
    return _sr((np.sign(pred) * y[half:]).ravel())


@pytest.mark.parametrize('sharpe', [1.5, 3.0])
def test_pattern_defeats_linear_models(sharpe):
    n, S = 10_000, 20
    ann = math.sqrt(bars_per_year('XNYS', '1D'))
    out = {}
    for kind in ('pattern', 'momentum'):
        bars, oracle, info = planted_signal(n, n_symbols=S, seed=31, sharpe=sharpe, kind=kind, return_oracle=True)
        r, pos = _returns(bars), oracle['position'].to_numpy().reshape(S, -1).T
        half = 10 + (n - 10) // 2
        out[kind] = (_sr(_pnl(pos[half - 1:], r[half - 1:])) * ann, _linear_oos_sharpe(r) * ann)
    print(f"sharpe {sharpe}: out-of-sample (oracle, linear OLS on 10 lags): pattern {np.round(out['pattern'], 3)}, momentum {np.round(out['momentum'], 3)}")
    assert out['pattern'][1] < 0.25 * out['pattern'][0]     # nonlinear: the linear model misses most of it
    assert out['momentum'][1] > 0.75 * out['momentum'][0]   # the same linear model does find a linear signal
