"""Rankings as a user runs them: `backtest.portfolio: long_short` turns every candidate's predictions into a
dollar-neutral top-minus-bottom-quantile book traded through the same backtester and costs; the gate adds an ICIR
floor and reports the cross-sectional statistics; the competition metric matches an independent implementation of the
official one; bad input is refused before training."""
import json
import numpy as np
import pandas as pd
import polars as pl
import pytest
from yooptx.config import load_config
from yooptx.experiment import prepare
from yooptx.experiments.bakeoff import bakeoff
from yooptx.gate import evaluate
from yooptx.ranking import RankingError, competition_score
from yooptx.synth import planted_signal

CFG = {'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 1, 'window': 8, 'batch_size': 256}}},
       'features': {'names': ['ret_1', 'ret_5', 'rv_20']}, 'baselines': ['buy_hold', 'momentum', 'ridge'], 'seeds': [0, 1],
       'splits': {'n_folds': 2}, 'budget': {'max_epochs': 3}, 'backtest': {'portfolio': 'long_short', 'quantiles': 4}}


def test_a_ranking_bakeoff_is_judged_on_its_long_short_book(tmp_path):
    cfg = load_config(dict(CFG, baselines=['buy_hold', 'momentum', 'ridge', 'lgbm_ranker']))
    data = prepare(cfg, bars=planted_signal(400, n_symbols=8, seed=2, sharpe=3.0), calendar='XNYS')
    run = bakeoff(cfg, data=data, run_dir=tmp_path / 'run', progress=False)
    v = evaluate(run)
    rk = v['ranking']
    assert rk['n_dates'] > 200 and rk['mean_ic'] > 0.03 and rk['ic_t_hac'] > 2          # the planted signal ranks the symbols
    qm = {int(k): x for k, x in rk['quantile_mean_target'].items()}
    assert qm[4] > qm[1] and rk['top_k'] == 2
    chk = {c['name']: c for c in v['checks']}
    assert chk['ranking_icir']['threshold'] == 0.05 and chk['ranking_icir']['passed'] == (rk['icir'] >= 0.05)
    m = json.loads((run / 'metrics.json').read_text())['families']
    assert m['ridge']['icir'] is not None and m['buy_hold']['icir'] is None               # one value per date ranks nothing
    assert m['lgbm_ranker']['mean_ic'] > 0                                               # LambdaRank learns the planted ranking
    # the candidate's book: every bar's targets sum to zero; quantiles 4 of 8 symbols: 2 long, 2 short
    from yooptx.backtest import run as backtest_run
    p = pl.read_parquet(run / 'predictions.parquet').filter((pl.col('encoder') == 'candidate') & (pl.col('split') == 'test') & (pl.col('seed') == 0))
    r = backtest_run(data.bars, p.select('timestamp', 'symbol', 'prediction'), cfg.costs, cfg.backtest, data.calendar, data.freq)
    per = r.returns.group_by('timestamp').agg(pl.col('target').sum().alias('net'), (pl.col('target') > 0).sum().alias('longs'))
    assert per['net'].abs().max() == 0 and set(per['longs'].to_list()) <= {0, 2}
    # the submission file (competition layout) scores as the verdict's competition score against the realized returns
    from conftest import run_cli
    rc, out, err = run_cli('submission', str(run), '--out', str(tmp_path / 'sub.csv'))
    assert rc == 0, err
    rc, out, err = run_cli('gate', str(run), '--strict')                 # a CI job blocks on NO-GO: exit 3
    assert rc == (0 if v['verdict'] == 'GO' else 3) and 'ranking_icir' in out, (rc, err[-500:])
    sub = pl.read_csv(tmp_path / 'sub.csv')
    assert sub.columns[:2] == ['date_id', 'timestamp'] and sub.width == 2 + 8 and sub['date_id'].is_sorted()
    sol = (data.labels.select('timestamp', 'symbol', 'fwd_return').pivot(on='symbol', index='timestamp', values='fwd_return', sort_columns=True)
           .with_columns(pl.col('timestamp').cast(pl.Utf8)))
    sol = sub.select('date_id', pl.col('timestamp').cast(pl.Utf8)).join(
        sol.with_columns(pl.col('timestamp').str.slice(0, 10)).rename({'timestamp': 'day'}),
        left_on=pl.col('timestamp').str.slice(0, 10), right_on='day', how='left').select('date_id', *sub.columns[2:])
    keep = sol.select(pl.sum_horizontal(pl.exclude('date_id').is_not_null()) >= 2).to_series()   # the last date's return is unknown
    assert abs(competition_score(sol.filter(keep), sub.drop('timestamp').filter(keep)) - rk['competition_score']) < 1e-9


def _official(solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    "The competition's published metric, restated independently (pandas, row by row)."
    daily = []
    for i in range(len(solution)):
        y = solution.iloc[i].drop('date_id'); p = submission.iloc[i].drop('date_id')
        keep = y.notna()
        daily.append(np.corrcoef(p[keep].rank(method='average'), y[keep].rank(method='average'))[0, 1])
    d = pd.Series(daily)
    return float(d.mean() / d.std(ddof=0))


def test_the_competition_metric_matches_the_official_definition():
    rng = np.random.default_rng(3)
    T, N = 60, 30
    y = rng.standard_normal((T, N)); y[rng.random((T, N)) < 0.15] = np.nan       # targets not revealed / no trade
    p = 0.2 * np.nan_to_num(y) + rng.standard_normal((T, N)); p[:, 3] = np.round(p[:, 3], 0)   # ties in a column
    cols = [f'target_{i}' for i in range(N)]
    sol = pd.DataFrame(y, columns=cols).assign(date_id=range(T)); sub = pd.DataFrame(p, columns=cols).assign(date_id=range(T))
    ours = competition_score(pl.from_pandas(sol), pl.from_pandas(sub))
    assert abs(ours - _official(sol, sub)) < 1e-12
    with pytest.raises(RankingError, match='date_id 0: the predictions are all equal'):
        competition_score(pl.from_pandas(sol), pl.from_pandas(sub.assign(**{c: 1.0 for c in cols})))


def test_a_ranking_of_too_few_symbols_is_refused_before_training(tmp_path):
    from yooptx.core import ConfigError, UserError
    cfg = load_config(CFG)
    data = prepare(cfg, bars=planted_signal(300, n_symbols=3, seed=2), calendar='XNYS')
    with pytest.raises(UserError, match='it needs at least 5'):
        bakeoff(cfg, data=data, run_dir=tmp_path / 'run', progress=False)
    assert not (tmp_path / 'run').exists()
    with pytest.raises(ConfigError, match='long_only is true'):
        load_config(dict(CFG, backtest={'portfolio': 'long_short', 'long_only': True}))


def test_a_rank_loss_trains_on_whole_cross_sections(tmp_path):
    from yooptx.datasets import BarsDataModule
    from yooptx.runs import Ledger
    cfg = load_config(dict(CFG, train={'loss': 'rank', 'batching': 'cross_section', 'batch_size': 32}, seeds=[0], baselines=['momentum']))
    data = prepare(cfg, bars=planted_signal(300, n_symbols=8, seed=4, sharpe=3.0), calendar='XNYS')
    f = data.folds[0]
    dm = BarsDataModule(data.features, data.labels, data.folds, 0, L=8, batch_size=32, cross_section=True, calendar=data.calendar, freq=data.freq)
    ts = data.features['timestamp']
    for b in list(dm.train_dataloader())[:20]:
        t = ts.gather(b['row'].numpy())
        assert (t.value_counts()['count'] == 8).all()                       # all 8 symbols of each date, 4 dates a batch
    run = bakeoff(cfg, data=data, run_dir=tmp_path / 'run', progress=False)
    led = Ledger(run).read().filter(pl.col('encoder') == 'cnn')
    assert set(led['status']) == {'ok'}, led['error'].to_list()


def test_symbol_by_symbol_comparison_with_a_sign_test(tmp_path):
    from scipy.stats import binom
    from yooptx.reporting import views
    t = pl.DataFrame({'symbol': list('abcdefgh'), 'x': [1., 2, 3, 4, 5, 6, 7, 8], 'y': [0., 1, 2, 3, 4, 5, 9, 8]})
    h = views.head_to_head(t, 'x', 'y')                       # x wins 6, loses 1, one tie left out
    assert (h['symbols'], h['a_wins']) == (7, 6) and abs(h['sign_test_p'] - binom.sf(5, 7, 0.5)) < 1e-12
    cfg = load_config(dict(CFG, backtest={}, seeds=[0], encoders={'cnn': CFG['encoders']['cnn'], 'lstm': {'params': {'d_model': 8, 'window': 8}}}))
    run = bakeoff(cfg, data=prepare(cfg, bars=planted_signal(300, n_symbols=5, seed=1, sharpe=3.0), calendar='XNYS'), run_dir=tmp_path / 'run', progress=False)
    rv = views.load_run(run)
    sym = views.per_symbol_sharpe(rv)
    assert sym.height == 5 and {'cnn', 'lstm', 'momentum'} <= set(sym.columns)
    hh = views.head_to_head_table(rv, sym)
    assert hh['comparison'][0] == 'cnn vs lstm' and (hh['symbols'] <= 5).all()


def test_the_ranker_never_sees_test_labels():
    from yooptx.baselines import run_baseline
    cfg = load_config(dict(CFG, seeds=[0]))
    d = prepare(cfg, bars=planted_signal(300, n_symbols=6, seed=5, sharpe=3.0), calendar='XNYS')
    f = d.folds[1]
    m = np.zeros(d.labels.height, bool); m[f.test] = True
    flip = pl.Series(m)
    import dataclasses
    alt = dataclasses.replace(d, labels=d.labels.with_columns(pl.when(flip).then(-pl.col('fwd_return')).otherwise(pl.col('fwd_return')).alias('fwd_return')))
    a, b = run_baseline('lgbm_ranker', d, 1)['prediction'], run_baseline('lgbm_ranker', alt, 1)['prediction']
    assert np.array_equal(a.to_numpy(), b.to_numpy())
    with pytest.raises(Exception, match='at least 5 symbols'):
        run_baseline('lgbm_ranker', prepare(cfg, bars=planted_signal(300, n_symbols=2, seed=5), calendar='XNYS'), 1)


def test_spread_targets_are_ranked_like_symbols(tmp_path):
    from yooptx.core import ConfigError
    from yooptx.ranking import submission_frame
    legs = planted_signal(300, n_symbols=6, seed=6, sharpe=3.0)
    targets = [{'name': f's{i}_s{j}', 'a': f'SYN{i}', 'b': f'SYN{j}'} for i, j in ((0, 1), (2, 3), (4, 5), (1, 2), (3, 4))] + [{'a': 'SYN0'}]
    cfg = load_config(dict(CFG, data={'name': 'given', 'targets': targets}, seeds=[0], baselines=['momentum'],
                           train={'loss': 'rank', 'batching': 'cross_section', 'batch_size': 36}))
    data = prepare(cfg, bars=legs, calendar='XNYS')
    assert data.symbols == sorted(['s0_s1', 's2_s3', 's4_s5', 's1_s2', 's3_s4', 'SYN0'])
    b = data.bars.filter(pl.col('symbol') == 's0_s1').head(3)['close'].to_numpy()
    l0, l1 = (legs.filter(pl.col('symbol') == s).head(3)['close'].to_numpy() for s in ('SYN0', 'SYN1'))
    assert np.allclose(b, l0 / l1)
    run = bakeoff(cfg, data=data, run_dir=tmp_path / 'run', progress=False)
    assert evaluate(run)['ranking']['n_dates'] > 50
    assert submission_frame(run).columns[2:] == ['s0_s1', 's2_s3', 's4_s5', 's1_s2', 's3_s4', 'SYN0']   # the targets table's order
    with pytest.raises(ConfigError, match='name asset'):
        prepare(load_config(dict(CFG, data={'name': 'given', 'targets': [{'a': 'SYN0', 'b': 'NOPE'}]})), bars=legs, calendar='XNYS')
    with pytest.raises(ConfigError, match='1 to 4 bars'):
        prepare(load_config(dict(CFG, data={'name': 'given', 'targets': targets}, labels={'horizon': 5})), bars=legs, calendar='XNYS')
    with pytest.raises(ConfigError, match='used twice'):
        load_config(dict(CFG, data={'name': 'given', 'targets': [{'a': 'SYN0'}, {'a': 'SYN0'}]}))


def test_one_head_per_lag_and_an_ic_per_lag(tmp_path):
    cfg = load_config(dict(CFG, labels={'kind': 'forward_return', 'horizon': 1, 'horizons': [1, 2, 3]}, seeds=[0], baselines=['momentum'],
                           encoders={'cnn': CFG['encoders']['cnn']}))
    data = prepare(cfg, bars=planted_signal(300, n_symbols=6, seed=8, sharpe=3.0), calendar='XNYS')
    run = bakeoff(cfg, data=data, run_dir=tmp_path / 'run', progress=False)
    p = pl.read_parquet(run / 'predictions.parquet').filter(pl.col('encoder') == 'cnn')
    assert {'pred_h1', 'pred_h2', 'pred_h3', 'label_h2', 'label_h3'} <= set(p.columns)
    assert (p['prediction'] == p['pred_h1']).all() and not (p['pred_h2'] == p['pred_h1']).all()   # the first lag is traded
    v = evaluate(run)
    assert set(v['ranking']['by_lag']) == {1, 2, 3} and all(x['n_dates'] > 50 for x in v['ranking']['by_lag'].values())


def test_competition_layout_targets_per_lag_submission_and_newest_dates(tmp_path, monkeypatch):
    """Targets listed per (pair, lag) as in the competition's target_pairs: one series per pair, one head per lag, the rank
    loss per head (+ Huber via rank_weight); the submission reads each target at its lag; the long layout carries
    label_date_id = date_id + lag; the newest dates are predicted from their own history with the run's last-fold models."""
    from conftest import run_cli
    from yooptx.core import ConfigError
    from yooptx.data import DataCatalog
    from yooptx.ranking import submission_frame
    monkeypatch.setenv('YOOPTX_HOME', str(tmp_path / 'home'))
    legs = planted_signal(320, n_symbols=6, seed=9, sharpe=3.0)
    f = tmp_path / 'legs.parquet'; legs.write_parquet(f)
    DataCatalog().ingest(f, 'legs6', freq='1D', calendar='XNYS')
    cut = str(legs['timestamp'].unique().sort()[280])[:10]
    pairs = [('SYN0', 'SYN1'), ('SYN2', 'SYN3'), ('SYN4', 'SYN5'), ('SYN1', 'SYN2'), ('SYN3', None)]
    targets = [{'name': f'target_{2 * i + j}', 'a': a, **({'b': b} if b else {}), 'lag': lag}
               for i, (a, b) in enumerate(pairs) for j, lag in enumerate((1, 2))]
    with pytest.raises(ConfigError, match=r'train one head per lag with labels.horizons: \[1, 2\]'):
        load_config(dict(CFG, data={'name': 'legs6', 'targets': targets}))
    cfg = load_config(dict(CFG, data={'name': 'legs6', 'targets': targets, 'end': cut}, seeds=[0], baselines=['momentum'],
                           labels={'kind': 'forward_return', 'horizon': 1, 'horizons': [1, 2]},
                           train={'loss': 'huber', 'rank_weight': 1.0, 'batching': 'cross_section', 'batch_size': 30}))
    data = prepare(cfg)
    assert data.symbols == sorted(['SYN0-SYN1', 'SYN2-SYN3', 'SYN4-SYN5', 'SYN1-SYN2', 'SYN3'])    # one series per pair
    run = bakeoff(cfg, data=data, run_dir=tmp_path / 'run', progress=False)
    assert set(pl.read_parquet(run / 'ledger.parquet')['status']) == {'ok'}
    sub = submission_frame(run, 'cnn')
    assert sub.columns == ['date_id', 'timestamp'] + [t['name'] for t in targets]
    p = pl.read_parquet(run / 'predictions.parquet').filter((pl.col('encoder') == 'cnn') & (pl.col('split') == 'test'))
    one = p.filter(pl.col('symbol') == 'SYN2-SYN3').group_by('timestamp').agg(pl.col('pred_h2').mean()).sort('timestamp')
    assert np.allclose(sub.join(one, on='timestamp')['target_3'].to_numpy(), sub.join(one, on='timestamp')['pred_h2'].to_numpy())
    rc, out, err = run_cli('submission', run, '--family', 'cnn', '--layout', 'long', '--out', tmp_path / 'long.csv')
    assert rc == 0, err
    lg = pl.read_csv(tmp_path / 'long.csv')
    assert set(lg['lag']) == {1, 2} and (lg['label_date_id'] - lg['date_id'] == lg['lag']).all()
    # the newest dates (after the run's data end): predicted from history up to each date, in the submission layout
    rc, out, err = run_cli('submission', run, '--family', 'cnn', '--data', 'legs6', '--start', cut, '--out', tmp_path / 'new.parquet')
    assert rc == 0, err
    new = pl.read_parquet(tmp_path / 'new.parquet')
    assert new.height == 320 - 280 and new['date_id'].min() == 280 and new.select(pl.exclude('date_id', 'timestamp').is_null().sum()).sum_horizontal()[0] == 0
    # the same rows with less future: a date's prediction does not change when later bars are cut away (no look-ahead)
    rc, out, err = run_cli('submission', run, '--family', 'cnn', '--data', 'legs6', '--start', cut,
                           '--end', str(legs['timestamp'].unique().sort()[300])[:10], '--out', tmp_path / 'cut.parquet')
    assert rc == 0, err
    short = pl.read_parquet(tmp_path / 'cut.parquet')
    assert short.height == 20 and np.allclose(short['target_0'].to_numpy(), new.head(20)['target_0'].to_numpy())
    rc, out, err = run_cli('submission', run, '--data', 'legs6', '--out', tmp_path / 'x.csv')
    assert rc == 2 and '--start' in err and not (tmp_path / 'x.csv').exists()
