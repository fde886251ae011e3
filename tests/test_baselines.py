"""Baselines: no look-ahead (perturbed futures and labels), hand-computed rule signals, a closed-form ridge,
learning on a planted signal but not on a null market, and the prediction-frame contract."""
import dataclasses

import numpy as np
import polars as pl
import pytest

from yooptx.baselines import (BASELINE_REGISTRY, baseline_params, design_matrix, fold_rows, run_baseline, run_baselines, score)
from yooptx.baselines import BASELINES
from yooptx.core import UserError
from yooptx.experiment import prepare
from yooptx.predictions import PRED_COLUMNS, PRED_SCHEMA, validate_predictions
from yooptx.synth import planted_signal, random_walk

FITTED = ('ridge', 'logistic', 'lightgbm')
SERIES = tuple(b for b in BASELINES if b != 'lgbm_ranker')   # lgbm_ranker ranks >= 5 symbols: tests/test_ranking.py
KEY = ['encoder', 'params_hash', 'seed', 'fold', 'split', 'symbol', 'timestamp']


def _prep(bars, **cfg):
    return prepare({'splits': {'n_folds': 3}, **cfg}, bars=bars, calendar='XNYS')


@pytest.fixture(scope='module')
def bars():
    return planted_signal(700, n_symbols=2, seed=5, sharpe=2.0)


@pytest.fixture(scope='module')
def syn(bars):
    return _prep(bars)


def _key_frame(df):
    "A prediction frame without the realized columns (what the model decided)."
    return df.drop('label', 'fwd_return')


# ---------------------------------------------------------------- (a) no look-ahead

def _alter_after(bars, t_end, seed=0):
    "Bars with every price after `t_end` moved by an independent random walk (and volumes rescaled): a different future."
    rng = np.random.default_rng(seed)
    after = (bars['timestamp'] > t_end).to_numpy()
    sym = bars['symbol'].to_numpy()
    step = np.where(after, rng.normal(0, 0.03, bars.height), 0.0)
    factor = np.exp(pl.DataFrame({'s': sym, 'x': step}).select(pl.col('x').cum_sum().over('s'))['x'].to_numpy())
    vol = np.where(after, rng.uniform(0.2, 5.0, bars.height), 1.0)
    return bars.with_columns(*[(pl.col(c) * factor) for c in ('open', 'high', 'low', 'close')], pl.col('volume') * vol)


@pytest.mark.parametrize('k', [0, 1])
def test_predictions_ignore_bars_after_the_test_block(bars, syn, k):
    fold = syn.folds[k]
    alt = _prep(_alter_after(bars, fold.test_end, seed=k))
    for a, b in zip(syn.folds, alt.folds):                       # same grid, so the very same folds
        for part in ('train', 'val', 'test'): np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    rows, _ = fold_rows(syn, k)
    # the perturbation reaches what a leaky model could see: test rows' own labels and later features changed
    assert not syn.labels['fwd_return'][rows].equals(alt.labels['fwd_return'][rows])
    assert not syn.features.filter(pl.col('timestamp') > fold.test_end).equals(alt.features.filter(pl.col('timestamp') > fold.test_end))
    params = {'momentum': {'choose_from': [5, 10, 20]}}
    for name in SERIES:
        p0 = run_baseline(name, syn, k, seed=3, params=params.get(name))
        p1 = run_baseline(name, alt, k, seed=3, params=params.get(name))
        assert _key_frame(p0).equals(_key_frame(p1)), name


def _flip_labels(data, rows):
    "Data whose labels and forward returns at `rows` are flipped (up <-> down)."
    idx = np.zeros(data.labels.height, bool); idx[rows] = True
    m = pl.Series(idx)
    lab = data.labels.with_columns(pl.when(m).then(1 - pl.col('label')).otherwise(pl.col('label')).alias('label'),
                                   pl.when(m).then(-pl.col('fwd_return')).otherwise(pl.col('fwd_return')).alias('fwd_return'))
    return dataclasses.replace(data, labels=lab)


def test_fit_uses_training_labels_only(syn):
    k = 1
    f = syn.folds[k]
    val_test = _flip_labels(syn, np.concatenate([f.val, f.test]))
    test_only = _flip_labels(syn, f.test)
    train = _flip_labels(syn, f.train)
    for name in SERIES:
        base = _key_frame(run_baseline(name, syn, k))
        # val labels may choose a hyper-parameter (LightGBM's trees, momentum's k); test labels never matter
        assert base.equals(_key_frame(run_baseline(name, test_only, k))), name
        if name != 'lightgbm': assert base.equals(_key_frame(run_baseline(name, val_test, k))), name
    no_es = {'early_stopping': 0}
    assert _key_frame(run_baseline('lightgbm', syn, k, params=no_es)).equals(_key_frame(run_baseline('lightgbm', val_test, k, params=no_es)))
    # and the check can fail: the same flip on the training rows changes every fitted baseline
    for name in FITTED:
        a, b = run_baseline(name, syn, k)['prediction'], run_baseline(name, train, k)['prediction']
        assert not np.allclose(a.to_numpy(), b.to_numpy()), name


def test_normalizer_is_fit_on_training_rows(syn):
    k = 0
    f = syn.folds[k]
    X = design_matrix(syn, k)
    # robust scaling on the training rows: the training median of each (non-constant) feature is ~0 ...
    med = np.median(X[f.train], axis=0)
    assert np.abs(med).max() < 0.06
    # ... and changing features outside the training rows leaves the scaled training rows unchanged
    later = np.ones(syn.features.height, bool); later[f.train] = False
    feats = syn.features.with_columns(pl.when(pl.Series(later)).then(pl.col(c) * 10 + 3).otherwise(pl.col(c)).alias(c) for c in syn.feature_names)
    X2 = design_matrix(dataclasses.replace(syn, features=feats), k)
    np.testing.assert_array_equal(X[f.train], X2[f.train])


# ---------------------------------------------------------------- (b) correctness by hand

def _by_hand(data, k):
    "Log closes, symbol ids and rows of fold k, and a per-row 'same symbol k bars back' test."
    lc = np.log(data.bars['close'].to_numpy())
    sym = data.bars['symbol'].to_numpy()
    rows, split = fold_rows(data, k)
    return lc, sym, rows, split


def test_rule_baselines_match_hand_computation():
    # the second symbol's block starts inside the first folds' rows, so warm-up rows are exercised too
    d = prepare({'splits': {'n_folds': 2, 'val_fraction': 0.3}}, bars=random_walk(120, n_symbols=2, seed=2), calendar='XNYS')
    lc, sym, _, _ = _by_hand(d, 0)
    pos = np.arange(d.bars.height) - np.searchsorted(sym, sym)      # bar number within its symbol
    for k in range(len(d.folds)):
        rows, split = fold_rows(d, k)
        bh = run_baseline('buy_hold', d, k)
        assert (bh['prediction'] == 1.0).all()
        per = run_baseline('persistence', d, k)['prediction'].to_numpy()
        exp = np.array([np.sign(lc[r] - lc[r - 1]) if pos[r] >= 1 else 0.0 for r in rows])
        np.testing.assert_array_equal(per, exp)
        for L in (3, 20):
            mom = run_baseline('momentum', d, k, params={'lookback': L})['prediction'].to_numpy()
            np.testing.assert_array_equal(mom, [np.sign(lc[r] - lc[r - L]) if pos[r] >= L else 0.0 for r in rows])
            raw = run_baseline('momentum', d, k, params={'lookback': L, 'signal': 'return'})['prediction'].to_numpy()
            np.testing.assert_allclose(raw, [lc[r] - lc[r - L] if pos[r] >= L else 0.0 for r in rows], rtol=1e-12, atol=1e-15)
        mr = run_baseline('mean_reversion', d, k, params={'lookback': 2, 'vol_window': 10})['prediction'].to_numpy()
        exp = []
        for r in rows:
            if pos[r] < 10: exp.append(0.0); continue               # 10 one-bar returns need 11 bars
            rets = np.diff(lc[r - 10: r + 1])
            exp.append(-(lc[r] - lc[r - 2]) / (np.std(rets, ddof=1) * np.sqrt(2)))
        np.testing.assert_allclose(mr, exp, rtol=1e-9, atol=1e-12)


def test_momentum_chooses_lookback_on_validation_rows(syn):
    lc, sym, _, _ = _by_hand(syn, 0)
    cands = [3, 10, 40]
    for k, f in enumerate(syn.folds):
        fwd = syn.labels['fwd_return'].to_numpy()
        score_k = [np.nanmean(np.sign(lc[f.val] - lc[f.val - L]) * fwd[f.val]) for L in cands]
        best = cands[int(np.nanargmax(score_k))]
        got = run_baseline('momentum', syn, k, params={'choose_from': cands})
        rows, _ = fold_rows(syn, k)
        np.testing.assert_array_equal(got['prediction'].to_numpy(), np.sign(lc[rows] - lc[rows - best]))


def test_ridge_matches_closed_form(syn):
    k, alpha = 1, 3.0
    f = syn.folds[k]
    X = design_matrix(syn, k)
    y = syn.labels['fwd_return'].to_numpy()
    tr = f.train[np.isfinite(y[f.train])]
    xm, ym = X[tr].mean(0), y[tr].mean()                           # intercept unpenalized: centre, solve, add back
    Xc = X[tr] - xm
    beta = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y[tr] - ym))
    rows, _ = fold_rows(syn, k)
    got = run_baseline('ridge', syn, k, params={'alpha': alpha})['prediction'].to_numpy()
    np.testing.assert_allclose(got, (X[rows] - xm) @ beta + ym, rtol=1e-7, atol=1e-12)


def test_classifier_prediction_is_expected_direction(syn):
    for name in ('logistic', 'lightgbm'):
        p = run_baseline(name, syn, 2)
        np.testing.assert_allclose((p['prob_0'] + p['prob_1']).to_numpy(), 1.0, atol=1e-12)
        np.testing.assert_allclose(p['prediction'].to_numpy(), (p['prob_1'] - p['prob_0']).to_numpy(), atol=1e-12)
        assert ((p['prob_1'] > 0) & (p['prob_1'] < 1)).all()


def test_lightgbm_is_deterministic_per_seed(syn):
    a, b = run_baseline('lightgbm', syn, 1, seed=4), run_baseline('lightgbm', syn, 1, seed=4)
    assert a.equals(b)
    c = run_baseline('lightgbm', syn, 1, seed=5)
    assert not np.array_equal(a['prediction'].to_numpy(), c['prediction'].to_numpy())   # the seed drives subsampling
    assert (c['seed'] == 5).all()
    d = run_baseline('lightgbm', syn, 1, seed=5, params={'subsample': 1.0, 'colsample': 1.0})
    e = run_baseline('lightgbm', syn, 1, seed=6, params={'subsample': 1.0, 'colsample': 1.0})
    assert _key_frame(d).drop('seed').equals(_key_frame(e).drop('seed'))


# ---------------------------------------------------------------- (c) learning: planted signal vs null market

N_BARS = 3000


@pytest.fixture(scope='module')
def planted():
    return prepare({'splits': {'n_folds': 4}}, bars=planted_signal(N_BARS, seed=11, sharpe=3.0, kind='momentum'), calendar='XNYS')


@pytest.fixture(scope='module')
def null():
    return prepare({'splits': {'n_folds': 4}}, bars=random_walk(N_BARS, seed=11), calendar='XNYS')


def _test_scores(data, names, **kw):
    s = score(run_baselines(data, names=list(names), seeds=[0], **kw).filter(split='test'), by=('encoder',))
    return {r['encoder']: r for r in s.iter_rows(named=True)}


def test_fitted_baselines_learn_a_planted_signal(planted):
    # The planted return is a linear function of the last 5 returns (ret_5 is a feature). Oracle Sharpe 3 per
    # year ~ a hit rate of 0.58 and a rank IC of ~0.2; on ~2,400 test rows chance gives 0.5 +- 0.010 and 0 +- 0.020.
    s = _test_scores(planted, FITTED)
    n = s['ridge']['n']
    assert n > 2000
    se_hit, se_ic = 0.5 / np.sqrt(n), 1 / np.sqrt(n)
    for name in FITTED:
        assert s[name]['hit_rate'] > 0.5 + 2.5 * se_hit, (name, s[name])
        assert s[name]['ic'] > 4 * se_ic, (name, s[name])
    for name in ('ridge', 'logistic'):                              # the linear truth: linear models do best
        assert s[name]['hit_rate'] > 0.5 + 4 * se_hit and s[name]['ic'] > 0.15, (name, s[name])


def test_fitted_baselines_find_nothing_in_a_null_market(null):
    s = _test_scores(null, FITTED + ('momentum', 'persistence', 'mean_reversion'))
    n = s['ridge']['n']
    se_hit, se_ic = 0.5 / np.sqrt(n), 1 / np.sqrt(n)
    for name, r in s.items():
        assert abs(r['hit_rate'] - 0.5) < 3 * se_hit, (name, r)
        assert abs(r['ic']) < 3 * se_ic, (name, r)


@pytest.mark.parametrize('labels', [{'kind': 'three_class', 'threshold': 0.004}, {'kind': 'forward_return'}])
def test_other_label_kinds_learn(labels):
    d = prepare({'splits': {'n_folds': 4}, 'labels': labels}, bars=planted_signal(N_BARS, seed=11, sharpe=3.0), calendar='XNYS')
    preds = run_baselines(d, names=list(FITTED), seeds=[0])
    s = score(preds.filter(split='test'), by=('encoder',))
    assert (s['ic'] > 4 / np.sqrt(s['n'])).all(), s
    if labels['kind'] == 'three_class':
        for name in ('logistic', 'lightgbm'):
            p = preds.filter(encoder=name)
            np.testing.assert_allclose((p['prob_0'] + p['prob_1'] + p['prob_2']).to_numpy(), 1.0, atol=1e-9)
            np.testing.assert_allclose(p['prediction'].to_numpy(), (p['prob_2'] - p['prob_0']).to_numpy(), atol=1e-12)
    else:
        # a return label: lightgbm regresses it (no probabilities), logistic classifies its sign
        assert preds.filter(encoder='lightgbm')['prob_1'].null_count() == preds.filter(encoder='lightgbm').height
        assert preds.filter(encoder='logistic')['prob_1'].null_count() == 0


# ---------------------------------------------------------------- (d) the frame contract

def test_frame_contract(syn):
    preds = run_baselines(syn, names=list(SERIES))
    validate_predictions(preds)
    assert preds.columns == [*PRED_COLUMNS, 'prob_0', 'prob_1']
    for c, t in PRED_SCHEMA.items(): assert preds.schema[c] == t, c
    assert preds.schema['prob_0'] == pl.Float64
    assert preds.select(KEY).is_duplicated().sum() == 0
    assert preds['prediction'].is_finite().all()
    assert set(preds['encoder'].unique()) == set(SERIES)
    keys = syn.labels.select('timestamp', 'symbol').with_row_index('row')
    for (name, seed), g in preds.group_by('encoder', 'seed'):
        assert seed in syn.config.seeds
        for f in syn.folds:
            gf = g.filter(fold=f.fold).join(keys, on=['timestamp', 'symbol'], how='left')
            for split, want in (('val', f.val), ('test', f.test)):
                got = gf.filter(split=split)['row'].sort().to_numpy()
                np.testing.assert_array_equal(got, np.sort(want), err_msg=f"{name} seed {seed} fold {f.fold} {split}")
            # label and fwd_return are the realized ones of those rows
            lab = syn.labels[gf['row'].to_numpy()]
            assert gf['fwd_return'].equals(lab['fwd_return'].cast(pl.Float64), null_equal=True)
            assert gf['label'].equals(lab['label'].cast(pl.Float64), null_equal=True)
        assert g['params_hash'].n_unique() == 1
    # deterministic baselines run once (first seed), a subsampling LightGBM once per seed
    seeds = preds.group_by('encoder').agg(pl.col('seed').unique().sort()).sort('encoder')
    for r in seeds.iter_rows(named=True):
        want = syn.config.seeds if r['encoder'] == 'lightgbm' else syn.config.seeds[:1]
        assert r['seed'] == want, r


def test_params_hash_follows_parameters(syn):
    a = run_baseline('momentum', syn, 0)['params_hash'][0]
    b = run_baseline('momentum', syn, 0, params={'lookback': 20})['params_hash'][0]
    c = run_baseline('momentum', syn, 0, params={'lookback': 10})['params_hash'][0]
    assert a == b != c


def test_close_only_data():
    b = random_walk(500, seed=3).with_columns(*[pl.lit(None, pl.Float64).alias(c) for c in ('open', 'high', 'low', 'volume')])
    d = prepare({'splits': {'n_folds': 2}, 'features': {'preset': 'close_only_v1'}}, bars=b, calendar='XNYS')
    preds = run_baselines(d, names=list(SERIES), seeds=[0])
    assert preds['prediction'].is_finite().all() and set(preds['encoder']) == set(SERIES)


def test_bad_input_is_a_user_error(syn):
    with pytest.raises(UserError, match='known baselines: buy_hold, momentum, persistence'): run_baseline('arima', syn, 0)
    with pytest.raises(UserError, match='known baselines'): run_baselines(syn, names=['ridge', 'arima'])
    with pytest.raises(UserError, match="unknown key 'baselines.ridge.alpah'; allowed keys in baselines.ridge: alpha"):
        run_baseline('ridge', syn, 0, params={'alpah': 1})
    with pytest.raises(UserError, match='lookback: must be >= 1'): baseline_params('momentum', lookback=0)
    with pytest.raises(UserError, match='folds 0..2'): run_baseline('buy_hold', syn, 3)
    with pytest.raises(UserError, match='not run'): run_baselines(syn, names=['ridge'], params={'logistic': {'C': 2.0}})
    no_feats = dataclasses.replace(syn, features=syn.features.select('timestamp', 'symbol'))
    with pytest.raises(UserError, match='needs features.*features.preset'): run_baseline('ridge', no_feats, 0)
    run_baseline('momentum', no_feats, 0)                          # rule baselines need no features
    multi = prepare({'splits': {'n_folds': 3}, 'labels': {'horizons': [1, 5]}}, bars=random_walk(400, seed=1), calendar='XNYS')
    p = run_baseline('logistic', multi, 0)                            # several horizons: baselines trade the traded one (labels.horizon)
    lab = multi.labels.join(p.select('timestamp', 'symbol', pl.col('label').alias('got')), on=['timestamp', 'symbol'])
    assert lab.height and (lab['got'] == lab['label_h1'].cast(pl.Float64)).all()


def test_registry_names_match_config():
    assert tuple(BASELINE_REGISTRY) == BASELINES
    for name, (cls, params) in BASELINE_REGISTRY.items():
        assert cls.name == name and dataclasses.is_dataclass(params)
