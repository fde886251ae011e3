"""The Ray executor as a user runs it: a bake-off on a local 2-worker Ray gives the same trials and verdict numbers as
in-process; a worker that dies is retried, then its trial recorded failed with the error; worker log lines reach the
run's train.log; an unreachable address or resources no node has are refused before anything is written."""
import json, os, sys
import numpy as np
import polars as pl
import pytest
from conftest import run_cli, tree
ray = pytest.importorskip('ray')
from yooptx.config import load_config
from yooptx.core import UserError
from yooptx.experiment import prepare
from yooptx.experiments.bakeoff import bakeoff
from yooptx.experiments.executors import RayExecutor
from yooptx.gate import evaluate
from yooptx.synth import planted_signal

CFG = {'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 1, 'window': 16, 'batch_size': 128}, 'grid': {'lr': [0.001, 0.003]}}},
       'baselines': ['buy_hold', 'momentum'], 'seeds': [0, 1], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 2}}


@pytest.fixture(scope='module')
def local_ray():
    os.environ.pop('RAY_ADDRESS', None)
    yield ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, logging_level='WARNING')
    ray.shutdown()


def test_ray_bakeoff_matches_in_process(local_ray, tmp_path):
    cfg = load_config(CFG)
    d = prepare(cfg, bars=planted_signal(500, n_symbols=2, seed=5, sharpe=3.0), calendar='XNYS')
    a = bakeoff(cfg, data=d, run_dir=tmp_path / 'local', progress=False, threads=1)
    b = bakeoff(cfg, data=d, run_dir=tmp_path / 'ray', progress=False, threads=1, executor='ray')
    la, lb = (pl.read_parquet(r / 'ledger.parquet').sort('trial_id') for r in (a, b))
    assert la['trial_id'].to_list() == lb['trial_id'].to_list() and set(lb['status']) == {'ok'}
    ba, bb = (pl.read_parquet(r / 'backtest.parquet').sort('encoder', 'params_hash', 'seed', 'timestamp') for r in (a, b))
    assert np.allclose(ba['net'].to_numpy(), bb['net'].to_numpy(), atol=1e-12)
    va, vb = evaluate(a), evaluate(b)
    assert va['verdict'] == vb['verdict'] and va['candidate'] == vb['candidate']
    assert [c['value'] for c in va['checks']] == pytest.approx([c['value'] for c in vb['checks']], abs=1e-9, nan_ok=True)
    log = (b / 'train.log').read_text()
    assert '[worker ' in log and ' ok in ' in log                     # the workers' lines are in the run's log


def _die_once(task, data, run_dir):
    "Kill the worker on the first attempt at task 1 (a marker file remembers it), always at task 2."
    from pathlib import Path
    mark = Path(run_dir) / f"died-{task['trial_id']}"
    if task['trial_id'] == 't2' or (task['trial_id'] == 't1' and not mark.exists()):
        mark.touch(); os._exit(1)
    return {'trial_id': task['trial_id'], 'status': 'ok', 'value': data + task['i']}


def test_a_dead_worker_is_retried_then_recorded_failed(local_ray, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    tasks = [dict(trial_id=f't{i}', i=i, encoder='x', params_hash='h', params={}, fold=0, seed=0) for i in range(3)]
    rows = {r['trial_id']: r for r in RayExecutor(max_retries=1).map(_die_once, tasks, 10, str(tmp_path))}
    assert rows['t0'] == {'trial_id': 't0', 'status': 'ok', 'value': 10}
    assert rows['t1']['status'] == 'ok' and rows['t1']['value'] == 11          # died once, retried, done
    assert rows['t2']['status'] == 'failed' and 'after 1 retry' in rows['t2']['error']


def test_bad_ray_settings_are_refused_before_anything_is_written(local_ray, tmp_path):
    cfg = load_config({**CFG, 'executor': {'kind': 'ray', 'num_gpus': 1}})
    d = prepare(cfg, bars=planted_signal(300, n_symbols=2, seed=5, sharpe=3.0), calendar='XNYS')
    with pytest.raises(UserError, match=r'asks for 1 GPU\(s\) .* the Ray cluster has 0'):
        bakeoff(cfg, data=d, run_dir=tmp_path / 'gpu', progress=False)
    assert not (tmp_path / 'gpu').exists()


def test_an_unreachable_address_is_one_clear_error(tmp_path):
    env = {'YOOPTX_HOME': str(tmp_path / 'home'), 'YOOPTX_NO_TRACK': '1'}
    rc, out, err = run_cli('bakeoff', 'demo', '--executor', 'ray', '--address', '127.0.0.1:1', '--run', tmp_path / 'r', env_extra=env, timeout=240)
    assert rc == 2 and 'cannot start or reach Ray at 127.0.0.1:1' in err and err.count('Error') <= 2, err
    assert not (tmp_path / 'r').exists()
