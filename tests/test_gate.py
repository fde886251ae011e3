"""The gate says NO-GO on noise and GO on real signal: by simulation of what a bake-off hands it, and end to end
with real training on synthetic markets whose answer is known."""
import json
import pytest
from yooptx.experiments.bakeoff import bakeoff
from yooptx.config import GateConfig, load_config
from yooptx.experiment import prepare
from yooptx.gate import decide, evaluate, gate_checks, simulate_gate
from yooptx.synth import planted_signal, random_walk


def test_false_go_rate_under_the_null_is_small():
    r = simulate_gate(0.0, 1008, n_sims=150, seed=7)        # 4 years of daily bars, 10 trials, 3 baselines
    assert r['go_rate'] <= 0.02
    # each check alone does reject sometimes: the gate's size comes from requiring all of them
    assert r['pass_net_sharpe_ci'] <= 0.08 and r['pass_deflated_sharpe'] <= 0.05


def test_go_rate_with_a_real_edge():
    assert simulate_gate(1.5, 2520, n_sims=40, seed=8)['go_rate'] >= 0.85     # net Sharpe 1.5 over 10 years
    assert simulate_gate(3.0, 1260, n_sims=40, seed=9)['go_rate'] >= 0.9      # net Sharpe 3 over 5 years
    assert simulate_gate(1.5, 504, n_sims=40, seed=10)['go_rate'] <= 0.5      # 2 years are too short to tell


def test_more_trials_make_go_harder():
    import numpy as np
    rng = np.random.default_rng(3)
    T, ppy = 756, 252.0
    net = 0.01 * rng.standard_normal(T) + 1.6 / ppy**.5 * 0.01
    trials = np.column_stack([net] + [0.01 * rng.standard_normal(T) for _ in range(29)])
    args = (net, net + 1e-4, np.full(T, 0.2), {'b': 0.01 * rng.standard_normal(T)}, [0.1, 0.1], trials)
    d1 = next(c for c in gate_checks(*args, n_trials=1, gate=GateConfig(), cost_bps=1.5, periods_per_year=ppy) if c.name == 'deflated_sharpe')
    d30 = next(c for c in gate_checks(*args, n_trials=30, gate=GateConfig(), cost_bps=1.5, periods_per_year=ppy) if c.name == 'deflated_sharpe')
    assert d30.value < d1.value


CFG = {'encoders': {'cnn': {'params': {'d_model': 16, 'n_layers': 2, 'window': 16, 'batch_size': 128}, 'grid': {'lr': [0.001, 0.003]}}},
       'baselines': ['buy_hold', 'mean_reversion'], 'seeds': [0, 1], 'splits': {'n_folds': 3, 'embargo': 1}, 'budget': {'max_epochs': 2}}


@pytest.mark.parametrize('market,expected', [('planted', 'GO'), ('null', 'NO-GO')])
def test_end_to_end_bakeoff_and_gate(market, expected, tmp_path):
    cfg = load_config(CFG)
    bars = planted_signal(1200, n_symbols=3, seed=11, sharpe=3.0) if market == 'planted' else random_walk(1200, n_symbols=3, seed=11)
    run = bakeoff(cfg, data=prepare(cfg, bars=bars, calendar='XNYS'), run_dir=tmp_path / market, progress=False)
    v = evaluate(run)
    assert v['verdict'] == expected, v['sentence']
    assert v['n_trials'] == 2                    # two grid points of one family, counted from the ledger
    on_disk = json.loads((run / 'verdict.json').read_text())
    assert on_disk['verdict'] == expected and {c['name'] for c in on_disk['checks']} >= {'deflated_sharpe', 'pbo', 'beats_best_baseline'}
