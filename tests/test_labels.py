"""Labels: hand-computed cases for every kind, and the leakage rules (a label at t uses close_t and bars > t only,
never another symbol's bars; volatility-scaled thresholds use bars <= t only)."""
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from yooptx.config import LabelsConfig
from yooptx.bars import DataError
from yooptx.labels import (KINDS, LabelError, LabelSpec, make_labels, make_labels_from_config, label_horizon, _past_vol)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def frame(closes: dict, gaps: dict | None = None) -> pl.DataFrame:
    "Bars with only timestamp/symbol/close; `gaps[s]` lists day numbers skipped (missing bars) for symbol s."
    rows = []
    for s, cs in closes.items():
        days = [d for d in range(len(cs) + len((gaps or {}).get(s, []))) if d not in (gaps or {}).get(s, [])]
        rows += [(T0 + timedelta(days=d), s, float(c)) for d, c in zip(days, cs)]
    return pl.DataFrame(rows, schema={'timestamp': pl.Datetime('us', 'UTC'), 'symbol': pl.Utf8, 'close': pl.Float64}, orient='row')


def random_panel(seed: int, n: int, n_sym: int, gap_p: float = 0.1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    closes, gaps = {}, {}
    for k in range(n_sym):
        closes[f'S{k}'] = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))
        gaps[f'S{k}'] = [int(d) for d in np.flatnonzero(rng.random(n) < gap_p)]
    return frame(closes, gaps)


# ---------------------------------------------------------------- hand-computed cases

def test_forward_return_and_label_end():
    b = frame({'A': [1, 2, 4, 2], 'B': [10, 5]})
    lab = make_labels(b, 'forward_return', 2)
    assert lab.columns == ['timestamp', 'symbol', 'label', 'fwd_return', 'label_end']
    assert lab['label'].dtype == pl.Float64
    np.testing.assert_allclose(lab['label'].to_list()[:2], [math.log(4), math.log(1)])
    assert lab['label'].to_list()[2:] == [None] * 4          # A's last 2 rows, and all of B (only 2 bars)
    assert lab['label_end'].to_list() == [b['timestamp'][2], b['timestamp'][3], None, None, None, None]
    assert lab['fwd_return'].to_list()[:2] == lab['label'].to_list()[:2]


def test_direction_dead_band_and_ties():
    b = frame({'A': [100, 101, 101, 100.95, 99]})
    assert make_labels(b, 'direction', 1)['label'].to_list() == [1, 0, 0, 0, None]        # flat -> 0 ("not up")
    assert make_labels(b, 'direction', 1, dead_band=0.001)['label'].to_list() == [1, None, None, 0, None]
    assert make_labels(b, 'direction', 1)['label'].dtype == pl.Int64


def test_three_class_fixed():
    b = frame({'A': [100, 100.4, 101, 100, 100, 99]})
    # moves: +0.4%, +0.6%, -1%, 0, -1%
    assert make_labels(b, 'three_class', 1, threshold=0.005)['label'].to_list() == [1, 2, 0, 1, 0, None]
    # the config's dead_band is the default fixed threshold
    cfg = LabelsConfig(kind='three_class', horizon=1, dead_band=0.005)
    assert make_labels_from_config(b, cfg)['label'].to_list() == [1, 2, 0, 1, 0, None]


def test_three_class_vol_scaled_by_hand():
    c = [100, 101, 100, 102, 101, 103, 100]
    b = frame({'A': c})
    k, w, h = 0.7, 3, 2
    lab = make_labels(b, 'three_class', h, vol_k=k, vol_window=w)['label'].to_list()
    r = np.diff(np.log(c))
    want = []
    for t in range(len(c)):
        if t < w or t + h >= len(c): want.append(None); continue
        theta = k * np.std(r[t - w:t], ddof=1) * math.sqrt(h)     # returns of bars t-w+1..t
        m = math.log(c[t + h] / c[t])
        want.append(2 if m > theta else 0 if m < -theta else 1)
    assert lab == want
    assert any(x is not None for x in want)


def test_trend_matches_polyfit():
    rng = np.random.default_rng(3)
    c = list(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 40))))
    b = frame({'A': c})
    h = 6
    lab = make_labels(b, 'trend', h)['label'].to_list()
    y = np.log(c)
    for t in range(len(c)):
        if t + h >= len(c): assert lab[t] is None; continue
        slope = np.polyfit(np.arange(h), y[t + 1:t + h + 1], 1)[0]
        assert lab[t] == int(slope > 0)
    # dead band on the fitted move slope*(h-1)
    lab_db = make_labels(b, 'trend', h, dead_band=0.03)['label'].to_list()
    for t in range(len(c) - h):
        move = np.polyfit(np.arange(h), y[t + 1:t + h + 1], 1)[0] * (h - 1)
        assert lab_db[t] == (1 if move > 0.03 else 0 if move < -0.03 else None)


@pytest.mark.parametrize('vol', [False, True])
def test_triple_barrier_brute_force(vol):
    "Against a plain loop: first touch of +-theta on log(close_{t+j}/close_t), j=1..h; label_end = t+h (fwd_return's reach)."
    b = random_panel(11, 120, 2)
    h, k, w = 6, 1.0, 8
    kw = dict(vol_k=k, vol_window=w) if vol else dict(threshold=0.012)
    lab = make_labels(b, 'triple_barrier', h, **kw)
    for s in ('S0', 'S1'):
        g = b.filter(pl.col('symbol') == s); lg = lab.filter(pl.col('symbol') == s)
        y = np.log(g['close'].to_numpy()); r = np.diff(y)
        for t in range(len(y)):
            if t + h >= len(y): assert lg['label'][t] is None and lg['label_end'][t] is None; continue
            if vol:
                if t < w: assert lg['label'][t] is None; continue
                theta = k * np.std(r[t - w:t], ddof=1) * math.sqrt(h)
            else: theta = 0.012
            want, j_end = 1, h
            for j in range(1, h + 1):
                m = y[t + j] - y[t]
                if m >= theta: want, j_end = 2, j; break
                if m <= -theta: want, j_end = 0, j; break
            assert lg['label'][t] == want and lg['label_end'][t] == g['timestamp'][t + h], (s, t)
    assert set(lab['label'].drop_nulls().to_list()) == {0, 1, 2}


def test_multi_horizon_and_lag_group():
    b = frame({'A': [1, 2, 4, 8, 4, 2, 1]})
    lh = make_labels(b, 'forward_return', horizons=[3, 1])
    assert lh.columns == ['timestamp', 'symbol', 'label_h1', 'label_h3', 'fwd_return', 'label_end']
    np.testing.assert_allclose(lh['label_h1'].to_list()[:4], np.log([2, 2, 2, 0.5]))
    np.testing.assert_allclose(lh['label_h3'].to_list()[:4], np.log([8, 2, 0.5, 1 / 8]))
    assert lh['label_h1'].to_list()[4:] == [None] * 3       # null with the longest window
    np.testing.assert_allclose(lh['fwd_return'].to_list()[:4], lh['label_h3'].to_list()[:4])
    assert label_horizon(lh) == 3
    lo = make_labels(b, 'direction', 2, offsets=[0, 2])
    # label_o2 at t: log(close_{t+4}/close_{t+2})
    assert lo['label_o0'].to_list() == [1, 1, 0, None, None, None, None]     # 4/1, 8/2, 4/4 (flat -> 0)
    assert lo['label_o2'].to_list() == [0, 0, 0, None, None, None, None]     # 4/4, 2/8, 1/4
    assert lo['label_end'].to_list()[:3] == b['timestamp'].to_list()[4:7]
    assert label_horizon(lo) == 4 == LabelSpec('direction', 2, offsets=[0, 2]).max_horizon


def test_errors():
    b = frame({'A': [1, 2, 3]})
    with pytest.raises(LabelError, match='horizon must be an integer >= 1'): make_labels(b, 'direction', 0)
    with pytest.raises(LabelError, match='horizon must be an integer >= 1'): make_labels(b, 'direction', -2)
    with pytest.raises(LabelError) as e: make_labels(b, 'updown', 1)
    assert all(k in str(e.value) for k in KINDS)
    with pytest.raises(LabelError, match='not both'): make_labels(b, 'direction', horizons=[1, 2], offsets=[0, 1])
    with pytest.raises(LabelError, match='threshold > 0'): make_labels(b, 'three_class', 1)
    with pytest.raises(LabelError, match='not both'): make_labels(b, 'three_class', 1, threshold=0.01, vol_k=1.0)
    with pytest.raises(LabelError, match='dead_band has no meaning'): make_labels(b, 'forward_return', 1, dead_band=0.01)
    with pytest.raises(LabelError, match='allowed'): make_labels(b, 'direction', 1, band=0.01)
    with pytest.raises(DataError, match='not sorted'): make_labels(b.reverse(), 'direction', 1)
    with pytest.raises(DataError, match='missing column'): make_labels(b.drop('close'), 'direction', 1)
    with pytest.raises(LabelError, match='no row has a label_end'): label_horizon(make_labels(b, 'direction', 5))


# ---------------------------------------------------------------- leakage rules

SPECS = [dict(kind='forward_return', horizon=3), dict(kind='direction', horizon=2, dead_band=0.002),
         dict(kind='three_class', horizon=4, threshold=0.01), dict(kind='trend', horizon=5),
         dict(kind='direction', horizons=[1, 4]), dict(kind='forward_return', horizon=2, offsets=[0, 1, 3]),
         dict(kind='triple_barrier', horizon=4, threshold=0.012), dict(kind='triple_barrier', horizons=[2, 5], threshold=0.01)]


def _labels_at(lab: pl.DataFrame, i: int) -> tuple:
    return tuple(lab.drop('timestamp', 'symbol').row(i))


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, float) and y is not None: assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15)
        else: assert x == y


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), spec=st.sampled_from(SPECS), n_sym=st.integers(1, 3), data=st.data())
def test_label_uses_close_t_and_later_bars_only(seed, spec, n_sym, data):
    b = random_panel(seed, 60, n_sym)
    lab = make_labels(b, **spec)
    H = LabelSpec(**spec).max_horizon
    i = data.draw(st.integers(0, b.height - 1), label='row')
    sym = b['symbol'][i]
    pos = np.flatnonzero((b['symbol'] == sym).to_numpy())
    k = int(np.searchsorted(pos, i))                               # row i is the k-th bar of its symbol
    rng = np.random.default_rng(seed + 1)
    close = b['close'].to_numpy().copy()
    before, after = pos[:k], pos[k + H + 1:]
    other = np.flatnonzero((b['symbol'] != sym).to_numpy())
    changed = close.copy()
    for rows in (before, after, other): changed[rows] *= np.exp(rng.normal(0, 0.05, len(rows)))
    lab2 = make_labels(b.with_columns(pl.Series('close', changed)), **spec)
    _same(_labels_at(lab, i), _labels_at(lab2, i))
    # the last H bars of each symbol carry no label and no label_end
    if k + H >= len(pos): assert all(v is None for v in _labels_at(lab, i))
    elif spec['kind'] == 'triple_barrier':                          # ends at the first touch, at most H bars on
        assert b['timestamp'][i] < lab['label_end'][i] <= b['timestamp'][int(pos[k + H])]
    else: assert lab['label_end'][i] == b['timestamp'][int(pos[k + H])]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 5), w=st.integers(2, 15), n_sym=st.integers(1, 3), cut=st.integers(5, 79))
def test_vol_threshold_past_only_truncation(seed, h, w, n_sym, cut):
    "Labels of rows <= t computed on bars truncated after t+h equal those on the full bars (the threshold sees no future)."
    b = random_panel(seed, 80, n_sym)
    kind = 'three_class' if seed % 2 else 'triple_barrier'
    full = make_labels(b, kind, h, vol_k=0.8, vol_window=w)
    t_cut = T0 + timedelta(days=cut)
    # keep, per symbol, the bars up to h rows after the last bar <= t_cut
    keep = b.with_columns(pl.int_range(pl.len()).over('symbol').alias('i'))
    last = keep.filter(pl.col('timestamp') <= t_cut).group_by('symbol').agg(pl.col('i').max().alias('k'))
    kept = keep.join(last, on='symbol', how='left').filter(pl.col('i') <= pl.col('k') + h).drop('i', 'k')
    part = make_labels(kept, kind, h, vol_k=0.8, vol_window=w)
    sel = full.join(kept.select('symbol', 'timestamp'), on=['symbol', 'timestamp'], how='semi')
    mask = (sel['timestamp'] <= t_cut)
    assert sel.filter(mask).equals(part.filter(mask))
    # the std itself: computed on a prefix equals the full-series value at the prefix's last bar
    y = np.log(b.filter(pl.col('symbol') == 'S0')['close'].to_numpy())
    blk = np.zeros(len(y), np.int64)
    v_full = _past_vol(y, blk, w)
    for t in (w, len(y) // 2, len(y) - 1):
        np.testing.assert_allclose(_past_vol(y[:t + 1], blk[:t + 1], w)[t], v_full[t])


def test_labels_do_not_cross_symbols():
    "Each symbol's labels equal those computed on that symbol alone."
    b = random_panel(7, 50, 3)
    for spec in SPECS + [dict(kind='three_class', horizon=2, vol_k=1.0, vol_window=5),
                         dict(kind='triple_barrier', horizon=3, vol_k=1.0, vol_window=5)]:
        lab = make_labels(b, **spec)
        for s in ('S0', 'S1', 'S2'):
            assert lab.filter(pl.col('symbol') == s).equals(make_labels(b.filter(pl.col('symbol') == s), **spec))


def test_real_panel_shapes():
    from yooptx.data import DataCatalog
    bars = DataCatalog().load('stocks_1d')
    lab = make_labels(bars, 'direction', 5)
    assert lab.height == bars.height and lab.select('timestamp', 'symbol').equals(bars.select('timestamp', 'symbol'))
    # exactly the last 5 rows of each symbol are unlabelled
    assert lab.group_by('symbol').agg(pl.col('label_end').null_count())['label_end'].to_list() == [5] * 5
    assert label_horizon(lab) == 5
