"""Split audit: for random grids, panels, horizons, embargoes and validation shares, in both modes, every fold is
disjoint, ordered in time, purged (no label window touches a later set), embargoed, and the test blocks tile the
tail of the grid. CPCV: C(N, k) splits, each group tested C(N-1, k-1) times, purge and embargo hold."""
import json, math, re
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck, assume

from yooptx.config import SplitsConfig
from yooptx.splits import (Fold, SplitError, walk_forward, walk_forward_from_config, cpcv, cpcv_paths, describe,
                           save_describe, plot_folds)

T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
INF = np.iinfo(np.int64).max


def panel(seed: int, n: int, n_sym: int, drop_p: float):
    "Row timestamps (Datetime µs UTC, sorted by symbol then time) of a panel on an n-bar daily grid with missing bars, and per-row label_end h bars ahead in the row's own symbol (a function of h)."
    rng = np.random.default_rng(seed)
    sym_rows = []
    for k in range(n_sym):
        keep = np.flatnonzero(rng.random(n) >= drop_p) if n_sym > 1 else np.arange(n)
        if len(keep) == 0: keep = np.array([0])
        sym_rows.append(keep)
    days = np.concatenate(sym_rows)
    ts = pl.Series('timestamp', [T0 + timedelta(days=int(d)) for d in days], dtype=pl.Datetime('us', 'UTC'))

    def label_end(h):
        out = []
        for keep in sym_rows:
            out += [T0 + timedelta(days=int(keep[i + h])) if i + h < len(keep) else None for i in range(len(keep))]
        return pl.Series('label_end', out, dtype=pl.Datetime('us', 'UTC'))
    return ts, label_end


def window_end(ts: pl.Series, horizon: int, label_end) -> np.ndarray:
    t = ts.cast(pl.Int64).to_numpy()
    if label_end is not None: return label_end.cast(pl.Int64).fill_null(INF).to_numpy()
    grid = np.unique(t); pos = np.searchsorted(grid, t)
    return np.array([grid[p + horizon] if p + horizon < len(grid) else INF for p in pos])


def audit_walk_forward(folds: list[Fold], ts: pl.Series, horizon, embargo, label_end, n_folds, mode):
    t = ts.cast(pl.Int64).to_numpy()
    grid = np.unique(t); pos = np.searchsorted(grid, t); T = len(grid)
    end = window_end(ts, horizon, label_end)
    assert len(folds) == n_folds
    blocks = []
    for k, f in enumerate(folds):
        assert f.fold == k
        sets = [f.train, f.val, f.test, f.purged, f.embargoed]
        for s in sets:
            assert s.dtype == np.int64 and np.all(np.diff(s) > 0)
        allrows = np.concatenate(sets)
        assert len(np.unique(allrows)) == len(allrows), 'train/val/test/purged/embargoed overlap'
        assert len(f.train) and len(f.test)
        # time order: train < val < test
        if len(f.val): assert t[f.train].max() < t[f.val].min() and t[f.val].max() < t[f.test].min()
        assert t[f.train].max() < t[f.test].min()
        # purge: no train label window touches val or test; no val window touches test
        later = np.concatenate([f.val, f.test])
        assert end[f.train].max() < t[later].min()
        if len(f.val): assert end[f.val].max() < t[f.test].min()
        # every dropped-for-purge row really reaches a later span
        span_start = pos[np.concatenate([f.val, f.test, f.purged])]
        for r in f.purged: assert end[r] >= grid[span_start[span_start > pos[r]].min()]
        # the test block is a contiguous range of grid bars, all its rows included
        tp = np.unique(pos[f.test])
        assert np.array_equal(tp, np.arange(tp[0], tp[-1] + 1))
        assert np.array_equal(f.test, np.flatnonzero((pos >= tp[0]) & (pos <= tp[-1])))
        blocks.append(tp)
        # completeness: every row of the training span is in exactly one of train/val/purged/embargoed
        kept = np.concatenate([f.train, f.val, f.purged, f.embargoed])
        lo = pos[kept].min()
        if mode == 'expanding': assert lo == 0
        assert np.array_equal(np.sort(kept), np.flatnonzero((pos >= lo) & (pos < tp[0])))
        # embargo: no train row in the `embargo` bars after any earlier test block; embargoed rows are those bars
        zone = np.zeros(T, bool)
        for b in blocks[:-1]: zone[b[-1] + 1:b[-1] + 1 + embargo] = True
        assert not zone[pos[f.train]].any()
        assert zone[pos[f.embargoed]].all() if len(f.embargoed) else True
        # bounds are the first/last times of each set
        assert f.train_start == ts.gather(f.train).min() and f.test_end == ts.gather(f.test).max()
    # test blocks: equal length, contiguous, non-overlapping, ending at the last bar of the grid
    assert len({len(b) for b in blocks}) == 1
    for a, b in zip(blocks, blocks[1:]): assert b[0] == a[-1] + 1
    assert blocks[-1][-1] == T - 1


ERR = re.compile(r'\d')


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(seed=st.integers(0, 10**6), n=st.integers(12, 300), n_sym=st.integers(1, 3), n_folds=st.integers(1, 6),
       horizon=st.integers(1, 6), embargo=st.integers(0, 8), val_fraction=st.sampled_from([0.0, 0.1, 0.2, 0.35]),
       mode=st.sampled_from(['expanding', 'rolling']), use_label_end=st.booleans(), train_frac=st.floats(0.3, 1.5))
def test_walk_forward_audit(seed, n, n_sym, n_folds, horizon, embargo, val_fraction, mode, use_label_end, train_frac):
    ts, label_end_fn = panel(seed, n, n_sym, 0.15)
    le = label_end_fn(horizon) if use_label_end else None
    T = ts.n_unique()
    train_size = max(1, int(train_frac * T / (n_folds + 1))) if mode == 'rolling' else None
    counts = np.unique(ts.cast(pl.Int64).to_numpy(), return_counts=True)[1]
    if le is None and counts.min() != counts.max():
        # a gapped panel cannot be purged by counting grid bars: it must ask for label_end
        with pytest.raises(SplitError) as ei:    # the layout checks may speak first
            walk_forward(ts, n_folds, horizon, embargo=embargo, val_fraction=val_fraction, mode=mode, train_size=train_size)
        assert 'repeat unevenly' in str(ei.value) or ERR.search(str(ei.value)), str(ei.value)
        assume(False)
    try:
        folds = walk_forward(ts, n_folds, horizon, embargo=embargo, val_fraction=val_fraction, mode=mode,
                             label_end=le, train_size=train_size)
    except SplitError as e:
        assert ERR.search(str(e)), f'error names no numbers: {e}'
        L = T // (n_folds + 1)
        # a big enough grid with a short horizon never fails on the layout itself
        assert L <= horizon * 3 or val_fraction > 0 or mode == 'rolling' or use_label_end or n_sym > 1, str(e)
        assume(False)
    audit_walk_forward(folds, ts, horizon, embargo, le, n_folds, mode)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(200, 400), n_folds=st.integers(1, 4), horizon=st.integers(1, 5),
       embargo=st.integers(0, 10), val_fraction=st.sampled_from([0.0, 0.2, 0.3]), mode=st.sampled_from(['expanding', 'rolling']))
def test_walk_forward_audit_single_symbol_always_valid(seed, n, n_folds, horizon, embargo, val_fraction, mode):
    "On a single-symbol grid with room to spare, folds never fail and always pass the audit."
    ts, _ = panel(seed, n, 1, 0.0)
    folds = walk_forward(ts, n_folds, horizon, embargo=embargo, val_fraction=val_fraction, mode=mode)
    audit_walk_forward(folds, ts, horizon, embargo, None, n_folds, mode)
    # single symbol, fixed horizon: each fold purges exactly `horizon` train rows (and `horizon` val rows)
    for f in folds: assert f.n_purged == horizon * (2 if val_fraction else 1)


def test_gapped_panel_needs_label_end():
    ts, le_fn = panel(3, 80, 3, 0.2)
    with pytest.raises(SplitError, match=r"timestamps repeat unevenly \(1 to 3 rows per time\).*pass label_end="):
        walk_forward(ts, 3, 2)
    assert len(walk_forward(ts, 3, 2, label_end=le_fn(2))) == 3


def test_rows_in_any_order():
    "Indices are rows of the frame as given, whatever its order (e.g. a panel sorted by time, or shuffled)."
    ts, le_fn = panel(1, 60, 3, 0.1)
    le = le_fn(2)
    perm = np.random.default_rng(0).permutation(len(ts))
    a = walk_forward(ts, 3, 2, embargo=2, label_end=le); b = walk_forward(ts[perm], 3, 2, embargo=2, label_end=le[perm])
    for fa, fb in zip(a, b):
        for s in ('train', 'val', 'test', 'purged', 'embargoed'):
            assert np.array_equal(np.sort(perm[getattr(fb, s)]), getattr(fa, s))


def test_layout_and_initial_train():
    f = walk_forward(np.arange(103), 4, 2, val_fraction=0)
    assert [(int(x.test[0]), int(x.test[-1])) for x in f] == [(23, 42), (43, 62), (63, 82), (83, 102)]   # L = 20, initial 23
    g = walk_forward(np.arange(100), 4, 2, val_fraction=0, initial_train=0.6)
    assert [len(x.test) for x in g] == [10] * 4 and g[0].test[0] == 60
    r = walk_forward(np.arange(100), 4, 2, val_fraction=0.25, mode='rolling', train_size=40)
    assert all(len(x.train) + len(x.val) + x.n_purged == 40 for x in r[1:])


def test_errors_name_the_numbers():
    with pytest.raises(SplitError, match=r"horizon 5 bars >= the test block's 4 bars \(20 unique timestamps, 4 folds\)"):
        walk_forward(np.arange(20), 4, 5)
    with pytest.raises(SplitError, match='7 unique timestamps are too few for 9 folds'): walk_forward(np.arange(7), 9, 1)
    with pytest.raises(SplitError, match=r'fold 0: 4 training rows after purging 1 and embargoing 0 \(min_train_rows=50\)'):
        walk_forward(np.arange(30), 5, 1, val_fraction=0, min_train_rows=50)
    with pytest.raises(SplitError, match='fold 0: the validation set is empty: its 1 bars are all purged by horizon 1'):
        walk_forward(np.arange(30), 5, 1, val_fraction=0.2)
    with pytest.raises(SplitError, match='n_folds must be an integer >= 1, got 0'): walk_forward(np.arange(30), 0, 1)
    with pytest.raises(SplitError, match='horizon must be an integer >= 1, got 0'): walk_forward(np.arange(30), 2, 0)
    with pytest.raises(SplitError, match='val_fraction'): walk_forward(np.arange(30), 2, 1, val_fraction=1.0)
    with pytest.raises(SplitError, match='mode'): walk_forward(np.arange(30), 2, 1, mode='sliding')
    with pytest.raises(SplitError, match='train_size applies'): walk_forward(np.arange(30), 2, 1, train_size=5)
    with pytest.raises(SplitError, match='label_end has 3 values for 30'): walk_forward(np.arange(30), 2, 1, label_end=np.arange(3))
    with pytest.raises(SplitError, match='end before their own timestamp'): walk_forward(np.arange(30), 2, 1, label_end=np.arange(30) - 1)
    with pytest.raises(SplitError, match='missing value'): walk_forward(pl.Series([1, None, 3]), 1, 1)


def test_from_config_and_labels_integration():
    from yooptx.labels import make_labels, label_horizon
    from yooptx.synth import random_walk
    bars = random_walk(300, n_symbols=3, seed=1)
    lab = make_labels(bars, 'direction', 3)
    cfg = SplitsConfig(n_folds=4, mode='expanding', val_fraction=0.2, embargo=2)
    folds = walk_forward_from_config(lab['timestamp'], cfg, label_horizon(lab), label_end=lab['label_end'])
    audit_walk_forward(folds, lab['timestamp'], 3, 2, lab['label_end'], 4, 'expanding')
    # triple-barrier labels may settle early, but their fwd_return reaches t+h: the purge must cover all of it
    tb = make_labels(bars, 'triple_barrier', 10, threshold=0.01)
    folds = walk_forward(tb['timestamp'], 4, label_horizon(tb), embargo=2, label_end=tb['label_end'])
    audit_walk_forward(folds, tb['timestamp'], 10, 2, tb['label_end'], 4, 'expanding')
    grid_purge = walk_forward(tb['timestamp'], 4, 10, embargo=2)
    assert [f.n_purged for f in folds] == [f.n_purged for f in grid_purge]


# ---------------------------------------------------------------- CPCV

def audit_cpcv(folds, ts, n_groups, k, horizon, embargo, label_end):
    t = ts.cast(pl.Int64).to_numpy()
    grid = np.unique(t); pos = np.searchsorted(grid, t); T = len(grid)
    end = window_end(ts, horizon, label_end)
    assert len(folds) == math.comb(n_groups, k)
    counts = np.zeros(n_groups, int)
    for f in folds:
        counts[list(f.test_groups)] += 1
        assert len(f.val) == 0 and len(f.test_groups) == k
        sets = [f.train, f.test, f.purged, f.embargoed]
        allrows = np.concatenate(sets)
        assert len(np.unique(allrows)) == len(allrows) == len(t)            # a partition of the rows
        tt = np.sort(t[f.test])
        # purge: no train label window [t, end] contains a test time
        nxt = np.searchsorted(tt, t[f.train], side='right')
        ok = nxt == len(tt)
        ok[~ok] = tt[nxt[~ok]] > end[f.train][~ok]
        assert ok.all()
        # purge after a test group: no train row starts before a test label of that group has ended
        for g in f.test_groups:
            in_g = np.isin(pos, np.array_split(np.arange(T), n_groups)[g])
            g_rows = np.intersect1d(np.flatnonzero(in_g), f.test)
            if len(g_rows) == 0: continue
            g_last, g_end = t[g_rows].max(), end[g_rows][end[g_rows] < INF].max(initial=t[g_rows].max())
            later = f.train[t[f.train] > g_last]
            assert (t[later] > g_end).all(), (g, g_end)
        # embargo: no train row in the `embargo` bars after any run of test bars
        tp = np.zeros(T, bool); tp[pos[f.test]] = True
        zone = np.zeros(T, bool)
        for r in np.flatnonzero(tp[:-1] & ~tp[1:]): zone[r + 1:r + 1 + embargo] = True
        assert not zone[pos[f.train]].any()
    assert (counts == math.comb(n_groups - 1, k - 1)).all()
    P = cpcv_paths(n_groups, k)
    assert P.shape == (math.comb(n_groups - 1, k - 1), n_groups)
    for g in range(n_groups):
        assert len(set(P[:, g])) == P.shape[0] and all(g in folds[i].test_groups for i in P[:, g])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(60, 250), n_sym=st.integers(1, 3), n_groups=st.integers(3, 8), data=st.data(),
       horizon=st.integers(1, 3), embargo=st.integers(0, 3), use_label_end=st.booleans())
def test_cpcv_audit(seed, n, n_sym, n_groups, data, horizon, embargo, use_label_end):
    k = data.draw(st.integers(1, n_groups - 1), label='n_test_groups')
    ts, label_end_fn = panel(seed, n, n_sym, 0.1)
    le = label_end_fn(horizon) if use_label_end else None
    counts = np.unique(ts.cast(pl.Int64).to_numpy(), return_counts=True)[1]
    if le is None and counts.min() != counts.max():
        with pytest.raises(SplitError) as ei: cpcv(ts, n_groups, k, horizon=horizon, embargo=embargo)
        assert 'repeat unevenly' in str(ei.value) or ERR.search(str(ei.value)), str(ei.value)
        assume(False)
    try: folds = cpcv(ts, n_groups, k, horizon=horizon, embargo=embargo, label_end=le)
    except SplitError as e:                  # only when a gapped symbol's labels purge a whole small training group
        assert use_label_end and n_sym > 1 and ERR.search(str(e)), str(e)
        assume(False)
    audit_cpcv(folds, ts, n_groups, k, horizon, embargo, le)


def test_cpcv_errors():
    with pytest.raises(SplitError, match=r'n_test_groups \(6\) must be < n_groups \(6\)'): cpcv(np.arange(60), 6, 6, horizon=1)
    with pytest.raises(SplitError, match="horizon 5 bars >= the shortest group's 5 bars"): cpcv(np.arange(30), 6, 2, horizon=5)
    with pytest.raises(TypeError): cpcv(np.arange(30), 6, 2)          # horizon must be given


# ---------------------------------------------------------------- describe, save, plot

def test_describe_save_and_plot(tmp_path):
    ts, le_fn = panel(3, 120, 2, 0.1)
    folds = walk_forward(ts, 3, 2, embargo=3, label_end=le_fn(2))
    d = describe(folds, ts)
    assert d.height == 3 and d['test_start'].dtype == pl.Datetime('us', 'UTC')
    assert d['n_train'].to_list() == [len(f.train) for f in folds]
    assert d['n_purged'].to_list() == [f.n_purged for f in folds] and d['n_embargoed'][2] > 0
    assert (d['test_bars'] == d['test_bars'][0]).all()
    p = save_describe(folds, ts, tmp_path / 'run')
    rows = json.loads(p['json'].read_text())
    assert rows[1]['n_test'] == len(folds[1].test) and rows[0]['test_start'].startswith(str(folds[0].test_start.date()))
    assert pl.read_csv(p['csv']).height == 3
    assert not [x for x in (tmp_path / 'run').iterdir() if x.name.endswith('.tmp')]
    fig = plot_folds(folds, ts, title='t')
    assert fig.layout.title.text == 't' and fig.layout.xaxis.title.text == 'time (UTC)' and fig.layout.yaxis.title.text == 'fold'
    assert [tr.name for tr in fig.data] == ['embargo', 'purge', 'train', 'val', 'test']
    assert all(len(tr.x) for tr in fig.data)
    c = cpcv(ts, 5, 2, horizon=2, embargo=1, label_end=le_fn(2))
    assert describe(c, ts)['test_groups'][0] == '0,1'
    assert len(plot_folds(c, ts).data) == 5
