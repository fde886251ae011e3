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
