"""Bake-off harness: one ledger, resumable after a kill, failed trials recorded, process pool = in-process,
selection on validation rows only, the CLI (`yooptx bakeoff` / `yooptx gate`) and the pre-registered gate."""
import json, re
from pathlib import Path
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import run_cli, tree
from yooptx.experiments import bakeoff as B
from yooptx.config import load_config
from yooptx.experiment import prepare
from yooptx.gate import evaluate
from yooptx.runs import Ledger
from yooptx.synth import planted_signal

TINY = {'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 2, 'window': 16, 'batch_size': 256}}},
        'baselines': ['buy_hold', 'mean_reversion'], 'seeds': [0], 'splits': {'n_folds': 3}, 'budget': {'max_epochs': 1}}


@pytest.fixture(scope='module')
def data():
    cfg = load_config(TINY)
    return prepare(cfg, bars=planted_signal(500, n_symbols=1, seed=5, sharpe=3.0), calendar='XNYS')


def test_killed_bakeoff_resumes_without_redoing_trials(data, tmp_path, monkeypatch):
    real, calls = B.run_trial, []
    def flaky(task, d, run_dir, progress=False):
        if len(calls) == 2: raise KeyboardInterrupt      # the user hits Ctrl-C during the third trial
        calls.append(task['trial_id']); return real(task, d, run_dir)
    monkeypatch.setattr(B, 'run_trial', flaky)
    run = tmp_path / 'r'
    with pytest.raises(KeyboardInterrupt): B.bakeoff(data.config, data=data, run_dir=run, progress=False)
    assert Ledger(run).read()['trial_id'].to_list() == calls          # finished trials are in the ledger, nothing else
    monkeypatch.setattr(B, 'run_trial', lambda task, d, r, progress=False: (calls.append(task['trial_id']), real(task, d, r))[1])
    B.bakeoff(data.config, data=data, run_dir=run, progress=False)
    n = len(B.plan_trials(data.config, [0, 1, 2]))
    assert len(calls) == n and len(set(calls)) == n                   # every trial ran exactly once over both sessions
    led = Ledger(run).read()
    assert led.height == n and set(led['status']) == {'ok'}
    assert (run / 'selection.json').exists() and (run / 'backtest.parquet').exists()


def test_failed_trial_is_recorded_and_the_bakeoff_goes_on(data, tmp_path, monkeypatch):
    import yooptx.training.driver as W
    def boom(*a, **k): raise RuntimeError('CUDA out of memory (simulated)')
    monkeypatch.setattr(W, 'train_trial', boom)
    # every encoder trial fails: the baselines still finish, the bake-off ends, and the gate says there is no candidate
    run = B.bakeoff(data.config, data=data, run_dir=tmp_path / 'r', progress=False)
    with pytest.raises(Exception, match='no candidate: every encoder trial failed'): evaluate(run)
    led = Ledger(run).read()
    f = led.filter(pl.col('status') == 'failed')
    assert f.height == 3 and f['error'].str.contains('simulated').all()
    assert led.filter(pl.col('status') == 'ok')['encoder'].unique().sort().to_list() == ['buy_hold', 'mean_reversion']


def test_process_pool_gives_the_same_results(tmp_path):
    cfg = load_config({**TINY, 'encoders': {'cnn': {'enabled': False}}, 'baselines': ['momentum', 'ridge', 'logistic']})
    d = prepare(cfg, bars=planted_signal(400, n_symbols=2, seed=1, sharpe=3.0), calendar='XNYS')
    a = B.bakeoff(cfg, data=d, run_dir=tmp_path / 'a', progress=False)
    b = B.bakeoff(cfg, data=d, run_dir=tmp_path / 'b', jobs=2, progress=False)
    pa, pb = (pl.read_parquet(r / 'predictions.parquet') for r in (a, b))
    assert pa.height > 0 and pa.equals(pb)
    assert Ledger(a).read().height == Ledger(b).read().height == 3 * 3


def test_selection_never_reads_test_rows(data, tmp_path):
    run = B.bakeoff(data.config, data=data, run_dir=tmp_path / 'r', progress=False)
    p = pl.read_parquet(run / 'predictions.parquet')
    # scramble every test-row prediction: validation scores and so the selection must not move
    s1 = B.validation_scores(p)
    p2 = p.with_columns(pl.when(pl.col('split') == 'test').then(pl.col('prediction') * -7 + 1).otherwise(pl.col('prediction')).alias('prediction'))
    assert s1.equals(B.validation_scores(p2))


def test_cli_bakeoff_then_gate(home, tmp_path):
    cfg = dict(TINY, data={'name': 'btc_1d'}, seeds=[0])
    y = tmp_path / 'exp.yaml'; y.write_text(yaml.safe_dump(cfg))
    track = {'YOOPTX_NO_TRACK': '0'}
    # a tracking store that cannot be reached: the bake-off runs anyway and says tracking was skipped
    # --smoke: the same path at smoke settings (one short epoch), said loudly and recorded with the run
    rc, out, err = run_cli('--smoke', 'bakeoff', y, '--quiet', '--tracking-uri', 'http://127.0.0.1:9', env_extra=track, timeout=600)
    assert rc == 0, err
    assert 'tracking skipped: cannot reach the tracking store http://127.0.0.1:9' in err
    run = Path(re.search(r'^run folder: (.+)$', out, re.M)[1])
    assert 'net Sharpe' in out and '★' in out and 'candidate: cnn' in out       # the leaderboard: every family on test, the candidate marked
    assert re.search(r'^verdict: (NO-)?GO', out, re.M) and f'every check: yooptx gate {run}' in out   # and the verdict line
    assert 'smoke settings' in err and any('smoke settings' in w for w in json.loads((run / 'manifest.json').read_text())['warnings'])
    assert yaml.safe_load((run / 'config.yaml').read_text())['budget']['max_batches_per_epoch'] == 8
    assert run.parent == home / 'runs' and (run / 'ledger.parquet').exists()
    rc, out, err = run_cli('gate', run, env_extra=track)       # the default store: sqlite under $YOOPTX_HOME
    assert rc == 0, err
    from mlflow import MlflowClient
    c = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    r = c.search_runs([c.get_experiment_by_name('yooptx/btc_1d').experiment_id], f"tags.`yooptx.run_id` = '{run.name}'")
    assert len(r) == 1 and 'gate.go' in r[0].data.metrics
    v = json.loads((run / 'verdict.json').read_text())
    assert v['verdict'] in ('GO', 'NO-GO') and v['verdict'] in out and v['candidate'] == 'cnn'
    names = [c['name'] for c in v['checks']]
    for n in ('net_sharpe_ci', 'deflated_sharpe', 'beats_best_baseline', 'pbo', 'seed_robustness', 'break_even_cost', 'max_drawdown', 'pre_registration'):
        assert n in names
    assert all({'name', 'value', 'threshold', 'passed', 'sentence'} <= set(c) for c in v['checks'])
    assert v['n_trials'] == 1                       # one cnn configuration: the ledger says so, not the user
    smoke = next(c for c in v['checks'] if c['name'] == 'smoke_settings')   # a smoke run is never a GO, whatever its numbers
    assert smoke['passed'] is False and v['verdict'] == 'NO-GO' and 'smoke_settings' in v['sentence']
    # moving the goal posts after the fact is detected and voids the verdict
    c = yaml.safe_load((run / 'config.yaml').read_text()); c['gate']['dsr_min'] = 0.5
    (run / 'config.yaml').write_text(yaml.safe_dump(c))
    rc, out, err = run_cli('gate', run)
    v = json.loads((run / 'verdict.json').read_text())
    assert rc == 0 and v['verdict'] == 'NO-GO' and not v['gate_unchanged'] and 'pre_registration' in v['sentence']


def test_cli_bad_input(home, tmp_path):
    rc, out, err = run_cli('bakeoff', 'demo', '--set', 'data.nme=x')
    assert rc == 2 and "unknown key 'data.nme'" in err and 'Traceback' not in err
    before = tree(home)
    rc, out, err = run_cli('bakeoff', 'demo', '--set', 'encoders.transformer.params.d_model=30', '--set', 'encoders.transformer.params.n_heads=4')
    assert rc == 2 and 'divisible' in err and tree(home) == before     # refused before any run folder is made
    rc, out, err = run_cli('gate', tmp_path)
    assert rc == 2 and 'lacks config.yaml' in err


def test_fold_choices_only_see_earlier_validation_rows(data, tmp_path):
    "Fold 0's configuration is chosen on fold 0's validation rows only: later folds' validation rows lie inside its test block."
    cfg = load_config({**TINY, 'encoders': {'cnn': {'params': TINY['encoders']['cnn']['params'], 'grid': {'lr': [0.001, 0.01]}}}})
    d = prepare(cfg, bars=data.bars, calendar='XNYS')
    run = B.bakeoff(cfg, data=d, run_dir=tmp_path / 'r', progress=False)
    raw = pl.read_parquet(run / 'predictions.parquet').filter(~pl.col('params_hash').str.starts_with('sel-') & (pl.col('encoder') == 'cnn'))
    before = B.select_per_fold(raw, 'cnn', [0, 1, 2])
    flipped = raw.with_columns(pl.when((pl.col('split') == 'val') & (pl.col('fold') >= 1)).then(-pl.col('prediction'))
                               .otherwise(pl.col('prediction')).alias('prediction'))
    assert B.select_per_fold(flipped, 'cnn', [0, 1, 2])[0] == before[0]
    sel = json.loads((run / 'selection.json').read_text())
    assert {int(k) for k in sel['families']['cnn']['per_fold']} == {0, 1, 2}
    bt = pl.read_parquet(run / 'backtest.parquet')
    assert bt.filter(pl.col('encoder') == 'candidate').height > 0


def test_overlapping_validation_blocks_and_the_effective_number_of_trials(tmp_path):
    """Six expanding folds with 20% validation: the last folds' validation blocks overlap. The bake-off still assembles
    (each configuration's validation returns keep the latest fold's row) and the gate reports an effective number of
    trials between 1 and the configurations counted."""
    from yooptx.splits import walk_forward
    cfg = load_config({'encoders': {'cnn': {'params': {'d_model': 8, 'window': 8}, 'grid': {'lr': [0.001, 0.002]}}},
                       'baselines': ['momentum'], 'seeds': [0], 'splits': {'n_folds': 6, 'val_fraction': 0.2}, 'budget': {'max_epochs': 1}})
    d = prepare(cfg, bars=planted_signal(600, n_symbols=2, seed=2, sharpe=3.0), calendar='XNYS')
    vals = [set(d.bars['timestamp'].gather(f.val).to_list()) for f in d.folds]
    assert any(a & b for i, a in enumerate(vals) for b in vals[i + 1:])               # the premise: overlapping blocks
    run = B.bakeoff(cfg, data=d, run_dir=tmp_path / 'run', progress=False)
    vb = pl.read_parquet(run / 'val_backtest.parquet')
    assert vb.group_by('encoder', 'params_hash', 'seed', 'timestamp').len()['len'].max() == 1
    v = evaluate(run)
    assert 1.0 <= v['n_trials_effective'] <= v['n_trials'] == 2
