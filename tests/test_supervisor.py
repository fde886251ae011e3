"""The safety supervisor as a user meets it: impossible thresholds refused in the config's words, an audit log that a
kill -9 leaves with complete lines only, and decisions that scale the backtest from the next fill."""
import json, signal, subprocess, sys, time
from pathlib import Path
import pytest
from yooptx.config import ConfigError, load_config
from yooptx.supervisor import AuditLog, Decision, SupervisorError, read_audit


def test_impossible_thresholds_are_config_errors():
    for bad, needle in ((['supervisor.caution_drawdown=0.3', 'supervisor.halt_drawdown=0.2'], 'CAUTION comes before HALT'),
                        (['supervisor.caution_scale=0'], 'caution_scale: a multiplier in (0, 1)'),
                        (['supervisor.halt_session_loss=1.5'], 'loss fractions in (0, 1)'),
                        (['supervisor.vol_history=10'], 'vol_history longer than it')):
        with pytest.raises(ConfigError, match=needle.replace('(', r'\(').replace(')', r'\)')): load_config('demo', bad)
    assert load_config('demo', ['supervisor.every=5']).supervisor.every == 5


def test_a_killed_writer_leaves_complete_lines_only(tmp_path):
    log = tmp_path / 'audit.jsonl'
    code = (f"from yooptx.supervisor import AuditLog, Decision\nlog = AuditLog({str(log)!r})\n"
            "i = 0\nwhile True:\n    log.append(i, {'drawdown': i * 1e-6, 'pad': 'x' * 3000}, Decision('CAUTION', 0.5, ['r'] * 50), 0.1); i += 1\n")
    p = subprocess.Popen([sys.executable, '-c', code])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < 2_000_000): time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    rows = read_audit(log)                                   # every line whole
    assert len(rows) > 100 and [r['timestamp'] for r in rows] == [str(i) for i in range(len(rows))]
    AuditLog(log).append('after', {}, Decision('OK', 1.0), 0.0)   # and it can be appended to
    with open(log, 'ab') as f: f.write(b'{"level": "HALT", "sc')
    n = len(rows) + 2
    with pytest.raises(SupervisorError, match=f'line {n}: unreadable'): read_audit(log)
    before = log.read_bytes()
    with pytest.raises(SupervisorError): AuditLog(log)
    assert log.read_bytes() == before                        # never rewritten


def test_the_supervised_candidate_is_one_more_trial_judged_and_shown(tmp_path):
    import polars as pl
    from yooptx.experiment import prepare
    from yooptx.experiments.bakeoff import SUPERVISED, bakeoff
    from yooptx.gate import evaluate
    from yooptx.reporting import views
    from yooptx.synth import random_walk
    tiny = {'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 1, 'window': 8, 'batch_size': 256}}},
            'baselines': ['buy_hold'], 'seeds': [0, 1], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 1},
            'supervisor': {'enabled': True, 'caution_drawdown': 0.02, 'halt_drawdown': 0.04, 'halt_sessions': 3}}
    cfg = load_config(tiny)
    run = bakeoff(cfg, data=prepare(cfg, bars=random_walk(500, seed=5), calendar='XNYS'), run_dir=tmp_path / 'run', progress=False)
    led = pl.read_parquet(run / 'ledger.parquet')
    assert led.filter(pl.col('encoder') == SUPERVISED).height == 4            # 2 folds x 2 seeds: counted as trials
    v = evaluate(run)
    assert v['n_trials'] == 2 and 'With the safety supervisor' in v['sentence']   # cnn's configuration + the supervised candidate
    sv = v['supervised']
    assert sv['max_drawdown'] <= sv['max_drawdown_without'] + 1e-12 and sv['verdict'] in ('GO', 'NO-GO')
    bt = pl.read_parquet(run / 'backtest.parquet').filter(pl.col('encoder') == SUPERVISED)
    assert bt['scale'].min() == 0.0 and bt['scale'].max() == 1.0             # it halted at some point and traded freely at others
    t = views.supervisor_table(views.load_run(run))
    assert t['metric'].to_list()[:3] == ['net Sharpe (annualized)', 'total return', 'max drawdown'] and t['with'][-1] == sv['verdict']
