"""Leakage suite and closed-form checks for yooptx.features: every registered feature (looked up in FEATURES at test
time, so a new one is covered automatically) must be unchanged when the future is cut off, must need no more than its
declared lookback, and exogenous series must join strictly as-of their publication time."""
import math, warnings
from datetime import timedelta
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from yooptx.calendars import available_at, sessions
from yooptx.data import DataCatalog
from yooptx.features import (FEATURES, PRESETS, ExogSeries, Feature, FeatureError, build, check_causal, describe_features,
                             feature_names, load_exog, register_exog)
from yooptx.synth import random_walk

HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def own_features(daily: bool) -> list[str]:
    "Every registered feature computed from the bars themselves (intraday-only ones excluded on daily bars)."
    return [n for n, f in FEATURES.items() if f.exog is None and not (daily and f.intraday)]


def exog_features() -> list[str]:
    return [n for n, f in FEATURES.items() if f.exog == 'vix']


def same(a: pl.Series, b: pl.Series, rtol=1e-9, atol=1e-12) -> bool:
    na, nb = a.is_null() | a.is_nan(), b.is_null() | b.is_nan()
    if not (na == nb).all(): return False
    return bool(np.allclose(a.filter(~na).to_numpy(), b.filter(~nb).to_numpy(), rtol=rtol, atol=atol))


def assert_prefix_equal(part: pl.DataFrame, ref: pl.DataFrame, names, what=''):
    assert part.select('timestamp', 'symbol').equals(ref.select('timestamp', 'symbol'))
    bad = [n for n in names if not same(part[n], ref[n])]
    assert not bad, f"{what}: features changed when the future was cut off: {bad}"


# ---------- fixtures: synthetic panels and real samples ----------

PANEL_D = random_walk(400, n_symbols=3, seed=11)                                   # daily NYSE, 3 symbols
PANEL_H = random_walk(400, n_symbols=3, seed=12, freq='30m', calendar='XNYS')      # intraday NYSE, 3 symbols
FULL_D = build(PANEL_D, own_features(True), calendar='XNYS')
FULL_H = build(PANEL_H, own_features(False), calendar='XNYS', freq='30m')


@pytest.fixture(scope='module')
def stocks():
    return DataCatalog().load('stocks_1d', start='2018-01-01', end='2020-01-01')


@pytest.fixture(scope='module')
def btc():
    return DataCatalog().load('btc_1h').head(1500)


@pytest.fixture(scope='module')
def vix():
    return DataCatalog().load('vix_1d')


# ---------- truncation invariance (the core of the leakage suite) ----------

@HYP
@given(t=st.integers(0, PANEL_D.height - 1))
def test_truncation_rows_daily_panel(t):
    names = own_features(True)
    assert_prefix_equal(build(PANEL_D.head(t + 1), names, calendar='XNYS'), FULL_D.head(t + 1), names, f'daily row cut {t}')


@HYP
@given(q=st.floats(0, 1))
def test_truncation_time_intraday_panel(q):
    ts = PANEL_H['timestamp'].unique().sort()
    cut = ts[int(q * (ts.len() - 1))]
    keep = PANEL_H['timestamp'] <= cut
    names = own_features(False)
    part = build(PANEL_H.filter(keep), names, calendar='XNYS', freq='30m')
    assert_prefix_equal(part, FULL_H.filter(keep), names, f'intraday time cut {cut}')


def test_truncation_real_samples(stocks, btc):
    assert check_causal(stocks, own_features(True), calendar='XNYS') == {}
    assert check_causal(btc, own_features(False), calendar='24/7') == {}
    n = btc.height
    assert check_causal(btc, own_features(False), cuts=[30, n // 3, n - 2], calendar='24/7') == {}


def test_truncation_exog_vix(stocks, vix):
    ex = {'vix': ExogSeries(vix, freq='1D', calendar='XNYS', lag=1)}
    names = own_features(True) + exog_features()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert check_causal(stocks, names, exog=ex, calendar='XNYS') == {}
        b = random_walk(300, n_symbols=3, seed=5, start='2015-06-01', freq='1h', calendar='24/7')
        assert check_causal(b, exog_features(), exog=ex, calendar='24/7') == {}


@pytest.mark.parametrize('panel,full,kw', [(PANEL_D, FULL_D, dict(calendar='XNYS')), (PANEL_H, FULL_H, dict(calendar='XNYS', freq='30m'))])
def test_lookback_is_enough(panel, full, kw):
    "Each feature computed from only its last `lookback` bars equals the full computation: the declared lookback is honest."
    sym = panel.filter(pl.col('symbol') == 'SYN1')
    f_sym = full.filter(pl.col('symbol') == 'SYN1')
    for n in [c for c in full.columns if c not in ('timestamp', 'symbol')]:
        lb = FEATURES[n].lookback
        for t in (lb - 1, 150, sym.height - 1):
            got = build(sym.slice(t - lb + 1, lb), [n], **kw)[n][-1]
            want = f_sym[n][t]
            assert (got is None and want is None) or math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (n, t, got, want)


def test_declared_lookback_is_tight():
    "Warm-up nulls are exactly lookback - 1 deep in every symbol (windows never reach across symbols)."
    first = FULL_D.group_by('symbol', maintain_order=True).agg(pl.col(n).is_null().arg_min() for n in own_features(True))
    for n in own_features(True):
        assert first[n].to_list() == [FEATURES[n].lookback - 1] * 3, n


# ---------- the checker catches leaks ----------

LEAKS = {
    'leak_next_ret': lambda: pl.col('close').log().shift(-1) - pl.col('close').log(),             # next bar's return
    'leak_centered': lambda: pl.col('close').rolling_mean(5, center=True).log() - pl.col('close').log(),
    'leak_fullsample': lambda: pl.col('close').log() - pl.col('close').log().mean(),                 # whole-series normalization
}


@pytest.mark.parametrize('name', list(LEAKS))
def test_checker_catches_leaks(name, monkeypatch):
    monkeypatch.setitem(FEATURES, name, Feature(name, LEAKS[name], 1, ('close',), 'leaky on purpose', 'returns'))
    bad = check_causal(PANEL_D, ['ret_1', name], calendar='XNYS')
    assert list(bad) == [name]
    bad_rows = check_causal(PANEL_D, ['ret_1', name], cuts=[50, 500, 1000], calendar='XNYS')
    assert list(bad_rows) == [name]


def test_registered_leak_fails_suite(monkeypatch):
    "A leaky feature registered like any other is caught by the same loop over FEATURES the suite uses."
    monkeypatch.setitem(FEATURES, 'leak_next_ret', Feature('leak_next_ret', LEAKS['leak_next_ret'], 1, ('close',), 'leaky', 'returns'))
    names = own_features(True)
    full = build(PANEL_D, names, calendar='XNYS')
    part = build(PANEL_D.head(200), names, calendar='XNYS')
    with pytest.raises(AssertionError, match='leak_next_ret'):
        assert_prefix_equal(part, full.head(200), names, 'leak')


# ---------- closed-form checks ----------

def test_ret_1_closed_form():
    for s in ('SYN0', 'SYN2'):
        c = PANEL_D.filter(pl.col('symbol') == s)['close'].to_numpy()
        r = FULL_D.filter(pl.col('symbol') == s)['ret_1'].to_numpy()
        assert np.isnan(r[0]) and np.allclose(r[1:], np.log(c[1:] / c[:-1]), rtol=1e-12)


def _series(close, symbol='A', start='2020-01-01'):
    n = len(close)
    ts = pl.Series(np.datetime64(start, 'us') + np.arange(n) * np.timedelta64(1, 'h')).dt.replace_time_zone('UTC')
    c = np.asarray(close, float)
    return pl.DataFrame({'timestamp': ts, 'symbol': symbol, 'open': c, 'high': c * 1.001, 'low': c * 0.999, 'close': c, 'volume': 1.0})


def test_constant_return_and_monotone():
    b = _series(100 * np.exp(0.01 * np.arange(100)))
    f = build(b, ['rv_5', 'rv_20', 'rv_60', 'rsi_14', 'ret_5'], calendar='24/7')
    for n in ('rv_5', 'rv_20', 'rv_60'): assert f[n].drop_nulls().abs().max() < 1e-12, n
    assert np.allclose(f['rsi_14'].drop_nulls().to_numpy(), 1.0)
    assert np.allclose(f['ret_5'].drop_nulls().to_numpy(), 0.05)
    down = build(_series(100 * np.exp(-0.01 * np.arange(40))), ['rsi_14'], calendar='24/7')
    assert np.allclose(down['rsi_14'].drop_nulls().to_numpy(), -1.0)


def test_calendar_terms_bounded():
    cal = [n for n, f in FEATURES.items() if f.family == 'calendar' and n != 'session_elapsed']
    for full in (FULL_H, build(random_walk(500, 2, seed=1, freq='1h', calendar='24/7'), preset='intraday_v1', calendar='24/7')):
        vals = full.select(cal).to_numpy()
        assert np.nanmax(np.abs(vals)) <= 1.0 + 1e-15 and not np.isnan(vals).any()
        e = full['session_elapsed'].drop_nulls().to_numpy()
        assert (e > 0).all() and (e <= 1 + 1e-12).all()


def test_windows_do_not_cross_symbols():
    # symbol B starts right after A in the frame: a window that ignored `symbol` would fill B's first rows from A
    a, b = _series(np.linspace(100, 120, 80), 'A'), _series(np.linspace(50, 40, 80), 'B')
    f = build(pl.concat([a, b]), preset='manual_v1', calendar='24/7')
    for n in PRESETS['manual_v1']:
        fb = f.filter(pl.col('symbol') == 'B')[n]
        assert fb.head(FEATURES[n].lookback - 1).null_count() == FEATURES[n].lookback - 1, n
    fa, fb2 = build(a, preset='manual_v1', calendar='24/7'), build(b, preset='manual_v1', calendar='24/7')
    assert_prefix_equal(pl.concat([fa, fb2]), f, PRESETS['manual_v1'], 'per symbol vs panel')


def test_same_rows_and_order_all_presets():
    for p in ('manual_v1', 'close_only_v1', 'minimal'):
        f = build(PANEL_D, preset=p, calendar='XNYS')
        assert f.select('timestamp', 'symbol').equals(PANEL_D.select('timestamp', 'symbol'))
        assert f.columns == ['timestamp', 'symbol'] + PRESETS[p]
        assert all(f.schema[n] == pl.Float64 for n in PRESETS[p])
    assert describe_features().height == len(FEATURES)


# ---------- exogenous joins ----------

def _vix_from(dates_ts: pl.Series, start=10.0):
    "A VIX series whose close on its k-th row is start + k: the value says which row a bar got."
    n = dates_ts.len()
    return pl.DataFrame({'timestamp': dates_ts, 'symbol': 'VIX', 'open': [None] * n, 'high': [None] * n, 'low': [None] * n,
                         'close': start + np.arange(n, dtype=float), 'volume': [None] * n},
                        schema_overrides={c: pl.Float64 for c in ('open', 'high', 'low', 'volume')})


def _row_used(f):
    return (f['vix_level'].exp() - 10).round(0)


def test_exog_daily_gets_previous_session():
    d = random_walk(250, 1, seed=3, calendar='XNYS', start='2021-01-04')
    vx = _vix_from(d['timestamp'])
    with warnings.catch_warnings(record=True):
        warnings.simplefilter('always')
        f1 = build(d, ['vix_level'], exog={'vix': ExogSeries(vx, freq='1D', calendar='XNYS', lag=1)}, calendar='XNYS')
        f0 = build(d, ['vix_level'], exog={'vix': ExogSeries(vx, freq='1D', calendar='XNYS', lag=0)}, calendar='XNYS')
        f2 = build(d, ['vix_level'], exog={'vix': ExogSeries(vx, freq='1D', calendar='XNYS', lag=2)}, calendar='XNYS')
    k = np.arange(d.height, dtype=float)
    assert _row_used(f1)[0] is None and np.array_equal(_row_used(f1).to_numpy()[1:], k[:-1])   # day D <- VIX D-1
    assert np.array_equal(_row_used(f0).to_numpy(), k)                                          # lag 0: same close, same instant
    assert np.array_equal(_row_used(f2).to_numpy()[2:], k[:-2])


@HYP
@given(seed=st.integers(0, 10_000), lag=st.integers(0, 3), hourly=st.booleans())
def test_exog_never_forward(seed, lag, hourly):
    "With holes in VIX and bars on another calendar, the VIX row used is always usable (available_at + lag sessions) by the bar's available_at, and is the latest such."
    rng = np.random.default_rng(seed)
    ses = sessions('XNYS', '2021-01-01', '2021-12-31')
    keep = np.sort(rng.choice(ses.height, ses.height * 4 // 5, replace=False))
    vdates = ses['session'].gather(keep).cast(pl.Datetime('us')).dt.replace_time_zone('UTC')
    vx = _vix_from(vdates)
    if hourly: bars, freq, cal = random_walk(24 * 60, 2, seed=seed, freq='1h', calendar='24/7', start='2021-02-01'), '1h', '24/7'
    else: bars, freq, cal = random_walk(150, 2, seed=seed, calendar='XNYS', start='2021-02-01'), '1D', 'XNYS'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        f = build(bars, ['vix_level'], exog={'vix': ExogSeries(vx, freq='1D', calendar='XNYS', lag=lag, tolerance=timedelta(days=60))},
                  calendar=cal, freq=freq)
    # independent reference: VIX row k (session index s_k) is usable at the close of session s_k + lag
    usable = ses['close'].gather(np.minimum(keep + lag, ses.height - 1)).dt.epoch('us').to_numpy()
    if lag and (keep + lag >= ses.height).any(): usable = usable[: (keep + lag < ses.height).sum()]
    avail = available_at(bars['timestamp'], freq, cal).dt.epoch('us').to_numpy()
    want = np.searchsorted(usable, avail, side='right') - 1
    got = _row_used(f).fill_null(-1).to_numpy().astype(int)
    assert np.array_equal(got, want)
    bar_day = bars['timestamp'].dt.date().to_numpy()
    used_day = vdates.dt.date().to_numpy()[got[got >= 0]]
    if lag >= 1 and not hourly: assert (used_day < bar_day[got >= 0]).all()   # daily bar of D never sees VIX of D


def test_exog_late_start_and_holes():
    d = random_walk(120, 2, seed=4, calendar='XNYS', start='2021-01-04')
    dates = d.filter(pl.col('symbol') == 'SYN0')['timestamp']
    late = _vix_from(dates.slice(30))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        f = build(d, ['ret_1', 'vix_level', 'vix_trend'], exog={'vix': ExogSeries(late, freq='1D', calendar='XNYS')}, calendar='XNYS')
    msgs = [str(x.message) for x in w]
    assert any("'vix' first becomes usable at" in m and str(dates[30])[:10] in m for m in msgs), msgs
    f0 = f.filter(pl.col('symbol') == 'SYN0')
    assert f0['vix_level'].head(31).null_count() == 31 and f0['vix_level'][31] is not None
    # a 30-session hole: bars beyond the tolerance are null, with a warning
    holed = _vix_from(pl.concat([dates.head(40), dates.slice(70)]))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        f = build(d, ['vix_level'], exog={'vix': ExogSeries(holed, freq='1D', calendar='XNYS')}, calendar='XNYS')
    assert any("'vix' has holes" in str(x.message) for x in w)
    f0 = f.filter(pl.col('symbol') == 'SYN0')['vix_level']
    assert f0.slice(60, 10).null_count() == 10 and f0[45] is not None


def test_exog_real_vix_and_other_series(stocks, vix):
    ex = load_exog(['vix_1d'], lag=1)
    assert set(ex) == {'vix'} and ex['vix'].calendar == 'XNYS'
    s = stocks.filter(pl.col('timestamp') >= pl.datetime(2015, 1, 1, time_zone='UTC'))
    f = build(s.filter(pl.col('timestamp') < pl.datetime(2019, 1, 1, time_zone='UTC')), preset='manual_vix_v1', exog=ex, calendar='XNYS')
    assert f['vix_level'].null_count() == 0 and f['vix_volatility'].null_count() == 0
    names = register_exog('spx')
    try:
        spx = DataCatalog().load('sp500_1d')
        g = build(s.head(200), names, exog={'spx': ExogSeries(spx, freq='1D', calendar='XNYS', lag=timedelta(hours=1))}, calendar='XNYS')
        assert g.columns == ['timestamp', 'symbol'] + names
    finally:
        for n in names: FEATURES.pop(n)


# ---------- bad input ----------

def test_bad_input():
    co = PANEL_D.with_columns(pl.lit(None, pl.Float64).alias(c) for c in ('open', 'high', 'low', 'volume'))
    with pytest.raises(FeatureError, match=r'vol_z_20 needs volume.*close-only'): build(co, ['ret_1', 'vol_z_20'])
    with pytest.raises(FeatureError, match=r'gap needs open'): build(co, ['gap'])
    with pytest.raises(FeatureError, match=r"unknown feature\(s\) 'nope'; known features: ret_1"): build(PANEL_D, ['nope'])
    with pytest.raises(FeatureError, match=r"unknown feature preset 'x'; known presets: manual_v1"): build(PANEL_D, preset='x')
    with pytest.raises(FeatureError, match=r"need the exogenous series 'vix'"): build(PANEL_D, ['vix_level'])
    with pytest.raises(FeatureError, match=r'wrap it as ExogSeries'): build(PANEL_D, ['vix_level'], exog={'vix': PANEL_D}, calendar='XNYS')
    with pytest.raises(FeatureError, match=r'carry nothing on daily bars'): build(PANEL_D, preset='intraday_v1')
    assert feature_names(None, 'close_only_v1') == PRESETS['close_only_v1']
    assert set(PRESETS['close_only_v1']) <= {n for n, f in FEATURES.items() if set(f.requires) <= {'close', 'timestamp'}}
