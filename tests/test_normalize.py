"""Normalizer and prescreen: statistics from training rows only (scaler audit), scaling properties, JSON round trip,
feature-list check, per-symbol statistics, and a prescreen that finds a planted feature and ignores non-train rows."""
import json
import numpy as np
import polars as pl
import pytest
from yooptx.normalize import Normalizer, NormalizerError, prescreen, feature_columns, POOLED
from yooptx.synth import random_walk


@pytest.fixture(scope='module')
def feats():
    bars = random_walk(1500, n_symbols=3, seed=7)
    ret = (pl.col('close') / pl.col('close').shift(1)).log().over('symbol')
    return bars.select('timestamp', 'symbol', ret.alias('ret1'),
                       ret.rolling_sum(5).over('symbol').alias('mom5'),
                       ret.rolling_std(20).over('symbol').alias('vol20'),
                       (pl.col('volume').log() * (1 + pl.col('symbol').str.slice(3).cast(pl.Float64))).alias('logvol'))


@pytest.fixture(scope='module')
def split(feats):
    cut = feats['timestamp'].sort()[int(0.6 * feats.height)]
    return np.flatnonzero(feats['timestamp'] < cut), np.flatnonzero(feats['timestamp'] >= cut)


def _vandalize(feats, rows, seed=0):
    "Replace the given rows' feature values with wild numbers (1e6 scale, NaN, inf)."
    rng = np.random.default_rng(seed)
    out = {}
    for c in feature_columns(feats):
        v = feats[c].to_numpy().copy()
        w = rng.standard_normal(rows.size) * 1e6 + 5e5
        w[::7] = np.nan; w[::11] = np.inf
        v[rows] = w
        out[c] = pl.Series(c, v)
    return feats.with_columns(**out)


@pytest.mark.parametrize('method', ['robust', 'zscore'])
@pytest.mark.parametrize('per_symbol', [False, True])
def test_scaler_audit_test_rows_do_not_move_fit(feats, split, method, per_symbol):
    train, test = split
    a = Normalizer(method, per_symbol=per_symbol).fit(feats, train)
    b = Normalizer(method, per_symbol=per_symbol).fit(_vandalize(feats, test), train)
    assert a.to_dict() == b.to_dict()
    # and the training rows' transform is identical too
    assert a.transform(feats)[train].equals(b.transform(_vandalize(feats, test))[train])


def test_robust_train_rows_median0_iqr1(feats, split):
    train, _ = split
    # each feature's statistics use that feature's own non-missing rows: keep nulls to see them
    out = Normalizer('robust', clip=None, nan='keep').fit(feats, train).transform(feats)[train]
    for c in feature_columns(feats):
        x = out[c].drop_nulls().to_numpy()
        assert abs(np.median(x)) < 1e-9
        q1, q3 = np.quantile(x, [0.25, 0.75])
        assert abs((q3 - q1) / 1.349 - 1) < 0.01, c


def test_zscore_train_rows_mean0_std1(feats, split):
    train, _ = split
    nz = Normalizer('zscore', clip=None, nan='keep').fit(feats, train)
    out = nz.transform(feats)[train]
    assert 'observed' not in out.columns
    for c in feature_columns(feats):
        x = out[c].drop_nulls().to_numpy()
        assert abs(x.mean()) < 1e-9 and abs(x.std() - 1) < 1e-9, c


def test_per_symbol_train_rows_standardized_within_symbol(feats, split):
    train, _ = split
    nz = Normalizer('zscore', per_symbol=True, clip=None, nan='keep').fit(feats, train)
    means = [nz.stats[s]['center'][feature_columns(feats).index('logvol')] for s in ('SYN0', 'SYN1', 'SYN2')]
    assert len(set(np.round(means, 6))) == 3 and means[2] > means[1] > means[0]
    out = nz.transform(feats).with_row_index('r').filter(pl.col('r').is_in(train.tolist()))
    g = out.group_by('symbol').agg(pl.col('logvol').mean().alias('m'), pl.col('logvol').std(ddof=0).alias('s'))
    assert g['m'].abs().max() < 1e-9 and (g['s'] - 1).abs().max() < 1e-9


def test_unseen_symbol_uses_pooled(feats, split):
    train, _ = split
    nz = Normalizer('robust', per_symbol=True).fit(feats, train)
    new = feats.head(50).with_columns(symbol=pl.lit('NEW'))
    pooled = Normalizer('robust').fit(feats, train)
    assert nz.transform(new).drop('symbol').equals(pooled.transform(new).drop('symbol'))


def test_clip_and_nan_policy(feats, split):
    train, test = split
    wild = _vandalize(feats, test)
    out = Normalizer('robust', clip=3.0).fit(wild, train).transform(wild)
    cols = feature_columns(feats)
    assert out.select(pl.max_horizontal(pl.col(cols).abs()).max()).item() <= 3.0
    assert out.select(pl.col(cols).null_count().sum()).sum_horizontal().item() == 0
    # a NaN/inf row is unobserved, and its value is 0
    r = int(test[0])          # w[0] is NaN for every feature
    assert out['observed'][r] is False and out['ret1'][r] == 0.0
    kept = Normalizer('robust', clip=3.0, nan='keep').fit(wild, train).transform(wild)
    assert kept['ret1'][r] is None


def test_constant_feature_reported(feats, split):
    train, _ = split
    f = feats.with_columns(k=pl.lit(2.5), empty=pl.lit(None, pl.Float64))
    nz = Normalizer('robust').fit(f, train)
    assert set(nz.constant[POOLED]) == {'k', 'empty'}
    out = nz.transform(f)
    assert out['k'].unique().to_list() == [0.0]
    s = nz.summary().filter(pl.col('feature').is_in(['k', 'empty']))
    assert s['scale'].to_list() == [1.0, 1.0] and s['constant'].all()


def test_json_round_trip_identical(tmp_path, feats, split):
    train, _ = split
    for kw in ({'method': 'robust'}, {'method': 'zscore', 'per_symbol': True, 'clip': None, 'nan': 'keep'}):
        nz = Normalizer(**kw).fit(feats, train)
        p = nz.to_json(tmp_path / 'sub' / 'normalizer.json')
        d = json.loads(p.read_text())
        assert d['method'] == kw['method'] and d['features'] == feature_columns(feats) and d['version'] == 1
        back = Normalizer.from_json(p)
        assert back.transform(feats).equals(nz.transform(feats))
        assert back.to_dict() == nz.to_dict()
    assert not list((tmp_path / 'sub').glob('*.tmp'))


def test_mismatch_errors(tmp_path, feats, split):
    train, _ = split
    nz = Normalizer().fit(feats, train)
    with pytest.raises(NormalizerError, match=r"missing \['vol20'\].*extra \['rsi14'\]"):
        nz.transform(feats.drop('vol20').with_columns(rsi14=pl.lit(0.0)))
    # a different order is the same feature set: reordered to the fitted order
    out = nz.transform(feats.select('timestamp', 'symbol', 'vol20', 'ret1', 'mom5', 'logvol'))
    assert out.columns[2:6] == feature_columns(feats)
    # loading into a run with different features is an error too
    back = Normalizer.from_json(nz.to_json(tmp_path / 'n.json'))
    with pytest.raises(NormalizerError, match=r"missing \['logvol'\]"):
        back.transform(feats.drop('logvol'))
    with pytest.raises(NormalizerError, match='not fitted'):
        Normalizer().transform(feats)
    (tmp_path / 'bad.json').write_text('{"kind": "other"}')
    with pytest.raises(NormalizerError, match='not a yooptx normalizer'):
        Normalizer.from_json(tmp_path / 'bad.json')
    with pytest.raises(NormalizerError, match=r'\[0, 4500\)'):
        Normalizer().fit(feats, np.array([0, 10_000]))


def _planted(feats, seed=3):
    rng = np.random.default_rng(seed)
    n = feats.height
    sig = rng.standard_normal(n)
    f = feats.with_columns(planted=pl.Series(sig), noise1=pl.Series(rng.standard_normal(n)),
                           noise2=pl.Series(rng.standard_normal(n)), flat=pl.lit(1.0))
    lab = feats.select('timestamp', 'symbol', label=pl.Series(np.sign(sig + 0.7 * rng.standard_normal(n))))
    return f, lab


def test_prescreen_planted(feats, split):
    train, _ = split
    f, lab = _planted(feats)
    kept, table = prescreen(f, lab, train, min_abs_ic=0.05)
    assert 'planted' in kept and 'flat' not in kept and 'noise1' not in kept and 'noise2' not in kept
    t = {r['feature']: r for r in table.iter_rows(named=True)}
    assert t['planted']['ic'] > 0.5 and t['planted']['kept']
    assert t['flat']['reason'].startswith('variance') and t['flat']['ic'] is None
    assert abs(t['noise1']['ic']) < 0.05 and t['noise1']['reason'].startswith('|ic|')
    assert table.columns == ['feature', 'n', 'variance', 'ic', 'kept', 'reason']
    kept1, table1 = prescreen(f, lab, train, top_k=1)
    assert kept1 == ['planted'] and table1.filter(pl.col('reason').str.starts_with('outside top_k')).height == len(feature_columns(f)) - 2


def test_prescreen_ignores_non_train_rows(feats, split):
    train, test = split
    f, lab = _planted(feats)
    k0, t0 = prescreen(f, lab, train, min_abs_ic=0.05)
    lab2 = lab.with_columns(label=pl.Series(np.where(np.isin(np.arange(lab.height), test), -lab['label'].to_numpy(), lab['label'].to_numpy())))
    k1, t1 = prescreen(_vandalize(f, test), lab2, train, min_abs_ic=0.05)
    assert k0 == k1 and t0.equals(t1)


def test_prescreen_row_mismatch(feats, split):
    train, _ = split
    f, lab = _planted(feats)
    with pytest.raises(NormalizerError, match='4500 rows, labels 4499'):
        prescreen(f, lab.head(4499), train)
