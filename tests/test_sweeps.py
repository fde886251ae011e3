"""Sweeps as a user runs them: `yooptx bakeoff` with an Optuna search killed with SIGKILL in the middle of its sweep,
then started again on the same run folder, finishes the sweep without training any trial twice; every point is in
sweeps.parquet and counted by the gate; a search space with an unknown key is refused before anything is written."""
import os, signal, subprocess, sys, time
import polars as pl
import pytest
import yaml
from conftest import REPO, YOOPTX, run_cli
pytest.importorskip('optuna')

CFG = {'data': {'name': 'sp500_1d', 'start': '2014-01-06', 'end': '2017-01-01'},
       'features': {'preset': 'manual_v1'}, 'splits': {'n_folds': 3, 'embargo': 1},
       'encoders': {'lstm': {'params': {'d_model': 8, 'window': 16},
                             'search': {'method': 'optuna', 'n_trials': 6,
                                        'space': {'lr': {'low': 0.0003, 'high': 0.01, 'log': True}, 'd_model': [8, 16]}}}},
       'baselines': ['buy_hold'], 'seeds': [0], 'budget': {'max_epochs': 2, 'max_trials_per_encoder': 6}, 'track': {'enabled': False}}


def test_a_killed_sweep_resumes_and_every_point_counts(tmp_path):
    from yooptx.experiments.sweeps import read_sweeps
    from yooptx.gate import evaluate
    cfg, run = tmp_path / 'sweep.yaml', tmp_path / 'home' / 'runs' / 'sweep1'
    cfg.write_text(yaml.safe_dump(CFG))
    env = dict(os.environ, YOOPTX_HOME=str(tmp_path / 'home'), YOOPTX_NO_TRACK='1')
    p = subprocess.Popen([str(YOOPTX), 'bakeoff', str(cfg), '--run', str(run), '--quiet', '--jobs', '1'], env=env, cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 240 and p.poll() is None:
        if (run / 'sweeps.parquet').exists() and read_sweeps(run).filter(pl.col('state') != 'RUNNING').height >= 2: break
        time.sleep(0.2)
    assert p.poll() is None, 'the sweep finished before it could be killed: make it longer'
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    before = read_sweeps(run)
    assert 2 <= before.filter(pl.col('state') != 'RUNNING').height < 6
    rc, out, err = run_cli('bakeoff', cfg, '--run', run, '--quiet', env_extra={'YOOPTX_HOME': str(tmp_path / 'home')}, timeout=600)
    assert rc == 0, err
    sw = read_sweeps(run)
    assert sw.filter(~pl.col('state').is_in(['CUT', 'RUNNING'])).height == 6 and set(sw['state']) <= {'COMPLETE', 'PRUNED', 'FAIL', 'CUT'}
    led = pl.read_parquet(run / 'ledger.parquet').filter(pl.col('status') == 'ok')
    assert led.group_by('trial_id').len()['len'].max() == 1                   # no trial trained twice
    v = evaluate(run)
    assert v['n_sweep_points'] == sw.filter(pl.col('state') != 'CUT').height and v['n_trials'] == sw['params_hash'].n_unique()
    assert 'The sweeps evaluated' in next(c['sentence'] for c in v['checks'] if c['name'] == 'deflated_sharpe')
    # the run in `yooptx runs`: its verdict, and the configurations the DSR counted beside the trainings run
    rc, out, err = run_cli('runs', '--json', env_extra={'YOOPTX_HOME': str(tmp_path / 'home')})
    assert rc == 0, err
    row = next(r for r in __import__('json').loads(out) if r['run_id'] == 'sweep1')
    assert (row['verdict'], row['configurations'], row['trainings']) == (v['verdict'], v['n_trials'], pl.read_parquet(run / 'ledger.parquet')['trial_id'].n_unique())
    rc, out, err = run_cli('runs', 'compare', 'sweep1', run, env_extra={'YOOPTX_HOME': str(tmp_path / 'home')})
    assert rc == 0 and 'config: 0 key(s) differ' in out
    rc, out, err = run_cli('runs', 'compare', 'sweep1', env_extra={'YOOPTX_HOME': str(tmp_path / 'home')})
    assert rc == 2 and 'give two run ids' in err


def test_a_bad_search_space_is_refused_before_anything_is_written(tmp_path):
    bad = {**CFG, 'encoders': {'lstm': {'params': {'d_model': 8}, 'search': {'method': 'optuna', 'n_trials': 3, 'space': {'lrate': [0.1]}}}}}
    cfg = tmp_path / 'bad.yaml'; cfg.write_text(yaml.safe_dump(bad))
    rc, out, err = run_cli('bakeoff', cfg, '--run', tmp_path / 'run', env_extra={'YOOPTX_HOME': str(tmp_path / 'home')})
    assert rc == 2 and "unknown param 'lrate'" in err and not (tmp_path / 'run').exists()
