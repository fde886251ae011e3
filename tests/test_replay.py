"""The replay as a user runs it: a run's candidate stepped bar by bar with features rebuilt from the bars so far trades
exactly the batch backtest's positions; a feature that peeks one bar ahead breaks that (the check has power); the kill
switch stops a paced replay within one bar; bad requests get one clear error."""
import json, os, subprocess, time
from pathlib import Path
import polars as pl
import pytest
from conftest import REPO, YOOPTX, run_cli
from yooptx.config import load_config
from yooptx.experiment import prepare
from yooptx.experiments.bakeoff import bakeoff
from yooptx.features import FEATURES, Feature, register
from yooptx.experiments.replay import replay
from yooptx.supervisor import read_audit
from yooptx.synth import random_walk

NAMES = ['ret_1', 'ret_5', 'rv_20', 'rsi_14']
TINY = {'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 1, 'window': 8, 'batch_size': 256}}},
        'features': {'names': NAMES}, 'baselines': ['buy_hold', 'momentum', 'ridge'], 'seeds': [0], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 2},
        'supervisor': {'caution_drawdown': 0.02, 'halt_drawdown': 0.04, 'halt_sessions': 3}}   # tight: it acts on a random walk


def _run(path, extra_names=(), bars=None):
    cfg = load_config(dict(TINY, features={'names': NAMES + list(extra_names)}))
    bars = random_walk(420, n_symbols=2, seed=11, start='2016-01-04') if bars is None else bars   # inside the bundled VIX's span
    return bakeoff(cfg, data=prepare(cfg, bars=bars, calendar='XNYS'), run_dir=path, progress=False)


@pytest.fixture(scope='module')
def clean_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp('replay') / 'run')


def test_replay_trades_the_batch_positions_exactly(clean_run):
    r = replay(clean_run, progress=False)
    assert r.parity['ok'], r.parity
    d = r.parity['seeds']['0']
    assert d['positions_equal'] and d['bars'] > 200 and d['max_abs_net_diff'] <= 1e-9
    assert r.positions['symbol'].n_unique() == 2 and r.fills.height > 0
    for f in ('positions.parquet', 'pnl.parquet', 'fills.parquet', 'summary.json', 'audit.jsonl', 'daily/index.html', 'plotly.min.js'):
        assert (r.path / f).exists(), f
    day = sorted((r.path / 'daily').glob('*.md'))[5].read_text()
    assert 'PnL:' in day and 'Positions held' in day
    html = sorted((r.path / 'daily').glob('20*.html'))[0].read_text()
    assert "src='../plotly.min.js'" in html and 'cdn' not in html.lower()
    # a replay over part of the test span is checked against the batch backtest of that window
    sub = replay(clean_run, start=str(r.positions['timestamp'][40]), end=str(r.positions['timestamp'][90]), out=r.path.parent / 'part',
                 summaries=False, progress=False)
    assert sub.parity['ok'] and sub.parity['seeds']['0']['bars'] == 2 * 52, sub.parity   # 51 decisions and the last one's fill, 2 symbols


def test_parity_on_bundled_data_and_on_a_planted_signal(tmp_path):
    from yooptx.synth import planted_signal
    cfg = load_config(dict(TINY, data={'name': 'btc_1d', 'end': '2020-12-31'}, features={'names': NAMES}))
    run = bakeoff(cfg, run_dir=tmp_path / 'btc', progress=False)             # real bundled bars, reloaded from the catalog
    r = replay(run, summaries=False, progress=False)
    assert r.parity['ok'] and r.parity['seeds']['0']['bars'] > 100, r.parity
    run = _run(tmp_path / 'planted', bars=planted_signal(420, n_symbols=2, seed=2, sharpe=3.0))
    r = replay(run, 'cnn', summaries=False, progress=False)
    assert r.parity['ok'], r.parity


def test_an_ensemble_candidate_replays(tmp_path):
    tiny = dict(TINY, encoders={'cnn': TINY['encoders']['cnn'], 'manual': {'params': {'d_model': 8, 'hidden': 8, 'window': 8, 'batch_size': 256}}},
                ensembles={'pair': {'members': ['cnn', 'manual'], 'method': 'weighted'}}, baselines=['buy_hold', 'ridge'])
    cfg = load_config(tiny)
    run = bakeoff(cfg, data=prepare(cfg, bars=random_walk(420, n_symbols=2, seed=11), calendar='XNYS'), run_dir=tmp_path / 'run', progress=False)
    r = replay(run, 'ensemble:pair', summaries=False, progress=False)      # members scaled and weighted as the bake-off did
    assert r.parity['ok'], r.parity


@pytest.mark.parametrize('baseline', ['momentum', 'ridge'])
def test_a_baseline_replays_to_its_batch_positions(clean_run, tmp_path, baseline):
    r = replay(clean_run, baseline, out=tmp_path / baseline, summaries=False, progress=False)    # ridge refits on the fold's training rows each bar
    assert r.parity['ok'], r.parity
    assert r.parity['seeds']['0']['max_abs_prediction_diff'] < 1e-9 and r.fills.height > 0


def test_the_supervisor_in_the_live_loop_decides_as_the_batch_overlay_does(clean_run, tmp_path):
    r = replay(clean_run, supervisor=True, out=tmp_path / 'sup', summaries=False, progress=False)
    assert r.parity['ok'] and r.parity['supervised'], r.parity          # against backtest.run(..., supervisor=Supervisor(cfg))
    levels = [a['level'] for a in read_audit(r.path / 'audit.jsonl') if a['judge'] in ('rules', 'latch')]
    assert levels.count('HALT') > 0 and levels.count('OK') > 0
    assert r.positions.filter(pl.col('held') == 0).height > r.positions.height // 10


def test_measured_latency_and_vix_feed_the_live_supervisor(clean_run, tmp_path):
    # the same run with a latency budget every decision breaks and the bundled VIX as an exogenous series: each live
    # decision reads the replay's own latency and VIX as of the bar; the batch overlay, given the same inputs, agrees
    import shutil, yaml
    run = tmp_path / 'run'; shutil.copytree(clean_run, run)
    c = yaml.safe_load((run / 'config.yaml').read_text())
    c['supervisor'].update(latency_budget_ms=0.001, halt_drawdown=0.5, caution_drawdown=0.4)
    c['features']['exog'] = ['vix_1d']
    (run / 'config.yaml').write_text(yaml.safe_dump(c))
    r = replay(run, supervisor=True, out=tmp_path / 'slow', summaries=False, progress=False)
    assert r.parity['ok'], r.parity
    rules = [a for a in read_audit(r.path / 'audit.jsonl') if a['judge'] == 'rules']
    assert rules and all(a['level'] != 'OK' and any('model latency' in x for x in a['reasons']) and a['context']['latency_ms'] > 0.001
                         for a in rules)
    summary = json.loads((r.path / 'summary.json').read_text())
    assert summary['latency_breaches'] == summary['speed']['bars']
    assert (r.positions['held'].abs() <= 0.5 + 1e-12).all()             # CAUTION holds half positions (or HALT none)
    assert sum('vix' in a['context'] for a in rules) > len(rules) // 2   # the bundled VIX as of each decision


def test_a_feature_that_peeks_ahead_breaks_parity(tmp_path):
    register(Feature('peek_next_ret', lambda: pl.col('close').shift(-1) / pl.col('close') - 1, 1, ('close',),
                     'LEAKS on purpose: the next bar return', 'returns'))
    try:
        run = _run(tmp_path / 'leaky', ['peek_next_ret'])
        r = replay(run, summaries=False, progress=False)
    finally: FEATURES.pop('peek_next_ret', None)
    assert not r.parity['ok'] and r.parity['seeds']['0']['position_mismatches'] > 10, r.parity


def test_the_kill_switch_stops_a_paced_replay_within_one_bar(clean_run, tmp_path):
    out = tmp_path / 'paced'
    env = dict(os.environ, YOOPTX_NO_TRACK='1')
    speed = 10.0
    test_times = pl.read_parquet(clean_run / 'predictions.parquet').filter(pl.col('split') == 'test')['timestamp'].unique().sort()
    p = subprocess.Popen([str(YOOPTX), 'replay', str(clean_run), '--speed', str(speed), '--out', str(out), '--no-summaries', '--quiet',
                          '--end', str(test_times[90])],                # ~9 s of paced bars: the halt lands in the middle
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / 'audit.jsonl').exists() and time.monotonic() < deadline: time.sleep(0.05)  # the loop starts (imports, checkpoints done)
    time.sleep(3)                                       # then ~30 paced bars
    rc, o, e = run_cli('halt', out, '--reason', 'test: breaking news')
    assert rc == 0 and 'HALT' in o, e
    sent = time.time()
    o, e = p.communicate(timeout=300)
    assert p.returncode == 0, e
    aud = [a for a in read_audit(out / 'audit.jsonl') if a['judge'] == 'kill-switch']
    noticed = next(a for a in aud if a['level'] == 'HALT' and 'wall' in a and a['context'].get('kill_switch'))
    assert noticed['wall'] - sent <= 1 / speed + 1.0, noticed['wall'] - sent      # read before the next bar (a bar takes ~0.1 s, more on a busy CI box)
    pos = pl.read_parquet(out / 'positions.parquet')
    t_h = pl.Series([noticed['timestamp']]).str.to_datetime(time_zone='UTC')[0]
    assert pos.filter(pl.col('timestamp') >= t_h)['target'].abs().max() == 0.0
    assert pos.filter(pl.col('timestamp') > t_h)['held'].abs().max() == 0.0      # flat from the next fill on
    assert pos.filter(pl.col('timestamp') < t_h)['held'].abs().max() > 0
    rc, o, e = run_cli('resume', out)
    assert rc == 0 and json.loads((out / 'halt.json').read_text())['halted'] is False


def test_bad_requests(clean_run, tmp_path):
    rc, o, e = run_cli('replay', clean_run, '--candidate', 'nope')
    assert rc == 2 and "unknown candidate 'nope'" in e and 'replayable: candidate, cnn, buy_hold, momentum, ridge' in e, e
    rc, o, e = run_cli('replay', clean_run, '--start', '2040-01-01')
    assert rc == 2 and 'holds no test bar' in e and 'its test bars span' in e, e
    rc, o, e = run_cli('halt', tmp_path / 'missing')
    assert rc == 2 and 'is not a folder' in e, e
