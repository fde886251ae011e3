"""The leakage suite: the whole data path — features → labels → purged walk-forward folds → normalizer and
prescreen → windows — audited for look-ahead on real bundled data (five US stocks with VIX joined as-of) and on
synthetic markets. Module-level tests (test_features, test_labels, test_splits, test_normalize, test_datasets)
check each piece in depth; this file checks them wired together, runs the placebo, and proves with a
deliberately leaky feature that the suite fails when it should."""
import numpy as np
import polars as pl
import pytest
from yooptx.data import DataCatalog
from yooptx.datasets import WindowDataset
from yooptx.features import FEATURES, Feature, build, check_causal, load_exog, register
from yooptx.labels import make_labels
from yooptx.normalize import Normalizer, prescreen
from yooptx.splits import walk_forward
from yooptx.synth import planted_signal, random_walk

H, EMBARGO, PRESET = 5, 5, 'manual_vix_v1'


@pytest.fixture(scope='module')
def pipe():
    bars = DataCatalog().load('stocks_1d', start='2014-02-01', end='2019-01-01')   # the span the bundled VIX covers
    exog = load_exog(['vix_1d'], lag=1)
    kw = dict(preset=PRESET, exog=exog, freq='1D', calendar='XNYS')
    feats = build(bars, **kw)
    labels = make_labels(bars, 'direction', H)
    folds = walk_forward(bars['timestamp'], n_folds=4, horizon=H, embargo=EMBARGO, val_fraction=0.2, label_end=labels['label_end'])
    return dict(bars=bars, kw=kw, feats=feats, labels=labels, folds=folds)


def _perturb_after(bars: pl.DataFrame, t, seed=0) -> pl.DataFrame:
    "Scramble every bar strictly after time `t` (prices scaled per row, volume shuffled), keeping OHLC consistent."
    rng = np.random.default_rng(seed)
    k = pl.Series(np.exp(rng.normal(0, 0.2, bars.height)))
    after = bars['timestamp'] > t
    scale = pl.select(pl.when(after).then(k).otherwise(1.0)).to_series()
    out = bars.with_columns([(pl.col(c) * scale).alias(c) for c in ('open', 'high', 'low', 'close')])
    return out.with_columns(pl.when(after).then(pl.col('volume') * 3 + 1).otherwise(pl.col('volume')).alias('volume'))


def test_features_are_truncation_invariant_on_the_pipeline(pipe):
    ts = pipe['bars']['timestamp'].unique().sort()
    cuts = [ts[int(q * (ts.len() - 1))] for q in (0.05, 0.37, 0.61, 0.88)]
    bad = check_causal(pipe['bars'], names=list(pipe['feats'].columns[2:]), cuts=cuts, **pipe['kw'])
    assert bad == {}, bad


@pytest.mark.parametrize('q', [0.3, 0.7])
def test_label_and_feature_alignment(pipe, q):
    """Features at rows <= t ignore bars after t; labels at rows whose window ends by t ignore them too, and the
    labels whose window reaches past t are exactly the ones that change (they look forward, as labels must)."""
    bars, feats, labels = pipe['bars'], pipe['feats'], pipe['labels']
    t = bars['timestamp'].unique().sort()[int(q * bars['timestamp'].n_unique())]
    b2 = _perturb_after(bars, t)
    f2, l2 = build(b2, **pipe['kw']), make_labels(b2, 'direction', H)
    past = (bars['timestamp'] <= t).to_numpy()
    for c in feats.columns[2:]:
        a, b = feats[c].to_numpy()[past], f2[c].to_numpy()[past]
        assert np.array_equal(np.isnan(a.astype(float)), np.isnan(b.astype(float))) and np.allclose(np.nan_to_num(a), np.nan_to_num(b)), c
    le = labels['label_end']
    settled = (le <= t).fill_null(False).to_numpy()
    reaching = (past & ~settled & le.is_not_null().to_numpy())
    assert labels['fwd_return'].to_numpy()[settled].tolist() == l2['fwd_return'].to_numpy()[settled].tolist()
    assert reaching.sum() > 0 and (labels['fwd_return'].to_numpy()[reaching] != l2['fwd_return'].to_numpy()[reaching]).all()
    assert (le > labels['timestamp']).fill_null(True).all()        # a label never ends at or before its own bar


def test_split_audit(pipe):
    ts, le = pipe['bars']['timestamp'], pipe['labels']['label_end']
    grid = ts.unique().sort()
    for f in pipe['folds']:
        sets = [set(f.train.tolist()), set(f.val.tolist()), set(f.test.tolist())]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]), f.fold
        val_start, test_start = ts[f.val].min(), ts[f.test].min()
        assert ts[f.train].max() < val_start <= ts[f.val].max() < test_start
        assert le[f.train].max() < val_start, f"fold {f.fold}: a training label reaches into validation"
        assert le[f.val].max() < test_start, f"fold {f.fold}: a validation label reaches into test"
        for g in pipe['folds'][:f.fold]:            # embargo after every earlier test block
            end = grid.search_sorted(ts[g.test].max())
            zone = grid[end + 1:end + 1 + EMBARGO]
            assert not ts[f.train].is_in(zone.implode()).any(), (f.fold, g.fold)


def test_scaler_and_prescreen_audit(pipe):
    feats, labels, f = pipe['feats'], pipe['labels'], pipe['folds'][-1]
    outside = np.setdiff1d(np.arange(feats.height), f.train)
    wrecked = feats.with_columns([pl.when(pl.int_range(feats.height).is_in(outside.tolist())).then(pl.col(c) * 1e3 - 7)
                                  .otherwise(pl.col(c)).alias(c) for c in feats.columns[2:]])
    wl = labels.with_columns(pl.when(pl.int_range(labels.height).is_in(outside.tolist())).then(1 - pl.col('label')).otherwise(pl.col('label')).alias('label'))
    for per_symbol in (False, True):
        a = Normalizer('robust', per_symbol=per_symbol).fit(feats, f.train).to_dict()
        b = Normalizer('robust', per_symbol=per_symbol).fit(wrecked, f.train).to_dict()
        assert a == b
    ka, ta = prescreen(feats, labels, f.train, top_k=8)
    kb, tb = prescreen(wrecked, wl, f.train, top_k=8)
    assert ka == kb and ta.equals(tb)


def test_windows_never_reach_forward(pipe):
    feats, labels, f = pipe['feats'], pipe['labels'], pipe['folds'][1]
    t = pipe['bars']['timestamp'][f.test].min()
    norm = Normalizer().fit(feats, f.train)
    x = norm.transform(feats)
    future = (feats['timestamp'] > t).to_numpy()
    x2 = x.with_columns([pl.when(pl.Series(future)).then(99.0).otherwise(pl.col(c)).alias(c) for c in norm.features])
    rows = f.val
    d1 = WindowDataset(x, labels, rows, L=32, calendar='XNYS', freq='1D')
    d2 = WindowDataset(x2, labels, rows, L=32, calendar='XNYS', freq='1D')
    for i in np.linspace(0, len(d1) - 1, 40).astype(int):
        a, b = d1[i], d2[i]
        assert a['row'] == b['row'] and bool((a['past_values'] == b['past_values']).all())


def _logistic(X, y, l2=1.0, iters=25):
    "Ridge-penalized logistic regression by Newton steps (enough for a placebo)."
    X = np.c_[np.ones(len(X)), X]
    w = np.zeros(X.shape[1])
    P = l2 * np.eye(X.shape[1]); P[0, 0] = 0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X @ w))
        g = X.T @ (p - y) + P @ w
        Hm = (X * (p * (1 - p))[:, None]).T @ X + P
        w -= np.linalg.solve(Hm, g)
    return lambda Z: (np.c_[np.ones(len(Z)), Z] @ w > 0).astype(int)


def _walk_forward_scores(feats, labels, folds, permute=False, seed=0):
    "Balanced accuracy of a logistic model over the stitched test blocks, with its normal-approximation SE."
    rng = np.random.default_rng(seed)
    y_all, p_all = [], []
    for f in folds:
        norm = Normalizer().fit(feats, f.train)
        X = norm.transform(feats).select(norm.features).to_numpy()
        y = labels['label'].to_numpy()
        tr = f.train[~np.isnan(y[f.train].astype(float))]
        te = f.test[~np.isnan(y[f.test].astype(float))]
        ytr = y[tr].astype(int)
        if permute: ytr = rng.permutation(ytr)
        predict = _logistic(X[tr], ytr)
        y_all.append(y[te].astype(int)); p_all.append(predict(X[te]))
    y, p = np.concatenate(y_all), np.concatenate(p_all)
    r1, r0 = (p[y == 1] == 1).mean(), (p[y == 0] == 0).mean()
    se = 0.5 * np.sqrt(r1 * (1 - r1) / (y == 1).sum() + r0 * (1 - r0) / (y == 0).sum())
    return 0.5 * (r1 + r0), max(se, 1e-9), len(y)


def test_placebo_permuted_labels_score_at_chance(pipe):
    ba, se, n = _walk_forward_scores(pipe['feats'].fill_nan(None), pipe['labels'], pipe['folds'], permute=True)
    se *= np.sqrt(H)          # H-bar labels overlap: about n/H independent outcomes, not n
    assert abs(ba - 0.5) < 2.58 * se, f"balanced accuracy {ba:.3f} ± {se:.3f} on {n} test rows: permuted labels beat chance"


def _synthetic(kind_or_null, seed=0):
    if kind_or_null == 'null': bars = random_walk(3000, n_symbols=3, seed=seed)
    else: bars = planted_signal(3000, n_symbols=3, seed=seed, sharpe=3.0, kind='momentum')
    feats = build(bars, preset='minimal', freq='1D', calendar='XNYS')
    labels = make_labels(bars, 'direction', 1)
    folds = walk_forward(bars['timestamp'], n_folds=4, horizon=1, val_fraction=0.2, label_end=labels['label_end'])
    return bars, feats, labels, folds


def test_placebo_has_power_and_null_market_is_at_chance():
    """The same model and folds: at chance on a null market, clearly above chance on a planted signal —
    so 'at chance' above is a finding, not a model too weak to learn anything."""
    _, f, l, folds = _synthetic('null')
    ba, se, _ = _walk_forward_scores(f, l, folds)
    assert abs(ba - 0.5) < 2.58 * se
    _, f, l, folds = _synthetic('planted')
    ba, se, _ = _walk_forward_scores(f, l, folds)
    assert ba - 0.5 > 3 * se, (ba, se)


def test_deliberate_leak_is_caught():
    """A feature that peeks at the next bar: the causality check flags it, and on a null market it 'predicts'
    far above chance — the placebo check would fail. Proof the suite can fail."""
    leak = Feature('leak_next_ret', lambda: (pl.col('close').shift(-1) / pl.col('close')).log(), 1, ('close',), 'next bar return (LEAK)', 'test')
    register(leak)
    try:
        bars, _, labels, folds = _synthetic('null')
        assert 'leak_next_ret' in check_causal(bars, names=['ret_1', 'leak_next_ret'], freq='1D', calendar='XNYS')
        f = build(bars, names=['ret_1', 'leak_next_ret'], freq='1D', calendar='XNYS')
        ba, se, _ = _walk_forward_scores(f, labels, folds)
        assert ba > 0.9 and abs(ba - 0.5) > 2.58 * se
    finally:
        FEATURES.pop('leak_next_ret', None)


def test_exog_leak_is_caught(pipe, monkeypatch):
    """If VIX were released five days early, the causality check (which also cuts the exogenous series' future)
    flags the VIX features; with the real publication times it does not."""
    from datetime import timedelta
    from yooptx import features as F
    bars = pipe['bars'].filter(pl.col('symbol') == 'AMZN')
    kw = dict(exog=pipe['kw']['exog'], freq='1D', calendar='XNYS')
    names = ['vix_level', 'vix_trend']
    assert check_causal(bars, names=names, **kw) == {}
    orig = F._usable_at
    monkeypatch.setattr(F, '_usable_at', lambda ex, ts, freq: orig(ex, ts, freq) - timedelta(days=5))
    assert set(check_causal(bars, names=names, **kw)) == set(names)


def test_exog_needs_the_bars_calendar(pipe):
    from yooptx.features import FeatureError
    with pytest.raises(FeatureError, match="pass build\\(..., calendar='XNYS'\\)"):
        build(pipe['bars'], names=['vix_level'], exog=pipe['kw']['exog'], freq='1D')


def test_rl_agent_never_reads_beyond_its_training_and_validation_spans():
    """An agent trained on fold 0 is the same agent (same weights, same validation history) when every bar after the
    fold's validation span is replaced by another market: training episodes stay inside the training blocks, and the
    checkpoint choice reads validation blocks only."""
    import torch
    from yooptx.config import RLSpec, load_config
    from yooptx.experiment import prepare
    from yooptx.rl.agent import train_agent
    from yooptx.rl.env import make_market
    cfg = load_config({'features': {'preset': 'minimal'}, 'splits': {'n_folds': 2, 'val_fraction': 0.25, 'embargo': 2}})
    a = planted_signal(700, n_symbols=1, seed=2, sharpe=3.0)
    d0 = prepare(cfg, bars=a, calendar='XNYS')
    cut = int(d0.folds[0].val.max()) + 2          # the validation span's last row, and the bar that marks its last return
    b = pl.concat([a.head(cut + 1), random_walk(700, n_symbols=1, seed=9).with_columns(symbol=pl.lit(a['symbol'][0]),
                                                                                        timestamp=a['timestamp']).slice(cut + 1)])
    d1 = prepare(cfg, bars=b, calendar='XNYS')
    assert not d0.bars['close'].equals(d1.bars['close'])
    spec = RLSpec(total_timesteps=300, learning_starts=100, batch_size=32, eval_every=100, episode_length=50, net_arch=[8])
    enc = {'encoder': 'manual', 'encoder_params': {'d_model': 4, 'hidden': 8, 'n_layers': 1}}
    ag = [train_agent(make_market(d, 0, 4, 'zscore'), spec, 0, enc) for d in (d0, d1)]
    assert ag[0].meta['history'] == ag[1].meta['history']
    for p, q in zip(ag[0].model.policy.state_dict().values(), ag[1].model.policy.state_dict().values()):
        assert torch.equal(p, q)
