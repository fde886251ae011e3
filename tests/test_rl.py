"""RL agents in the bake-off: an agent starts from the same run's encoder checkpoint of its fold, its decisions go
through the same backtester, ledger, selection and gate (each configuration x seed a trial), a saved agent acts alone,
and `yooptx run rl` renders its report on the run."""
import json
from pathlib import Path
import numpy as np
import polars as pl
import pytest
from conftest import run_cli
from yooptx.backtest import run as backtest_run
from yooptx.config import load_config
from yooptx.experiment import prepare
from yooptx.experiments.bakeoff import bakeoff, plan_trials
from yooptx.gate import evaluate
from yooptx.rl.agent import load_agent
from yooptx.rl.env import rollout
from yooptx.runs import Ledger
from yooptx.synth import planted_signal

AGENT = dict(total_timesteps=600, learning_starts=200, batch_size=64, eval_every=200, episode_length=100, net_arch=[16])
CFG = {'encoders': {'manual': {'params': {'d_model': 8, 'hidden': 16, 'window': 16, 'batch_size': 256}}},
       'rl': {'sac_manual': {'encoder': 'manual', 'mode': 'frozen', **AGENT},
              'sac_scratch': {'encoder': 'cnn', 'mode': 'scratch', 'window': 16, 'encoder_params': {'d_model': 8, 'n_layers': 1}, **AGENT}},
       'ensembles': {'mix': {'members': ['manual', 'sac_manual']}},       # an agent can be an ensemble member too
       'baselines': ['buy_hold', 'momentum'], 'seeds': [0], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 1}}


@pytest.fixture(scope='module')
def rl_run(tmp_path_factory):
    cfg = load_config(CFG)
    data = prepare(cfg, bars=planted_signal(900, n_symbols=1, seed=3, sharpe=3.0), calendar='XNYS')
    run = bakeoff(cfg, data=data, run_dir=tmp_path_factory.mktemp('rl') / 'run', progress=False)
    return run, data


def test_agents_are_trials_judged_by_the_same_gate(rl_run):
    run, data = rl_run
    led = Ledger(run).read()
    rl = led.filter(pl.col('encoder').str.starts_with('sac_'))
    assert rl.height == 4 and set(rl['status']) == {'ok'}, rl.select('trial_id', 'status', 'error')
    sel = json.loads((run / 'selection.json').read_text())
    assert sel['agents'] == ['sac_manual', 'sac_scratch']
    bt = pl.read_parquet(run / 'backtest.parquet')
    assert {'sac_manual', 'sac_scratch'} <= set(bt['encoder'].unique().to_list())
    v = evaluate(run)
    assert 'ensemble:mix' in sel['families']
    # every non-baseline configuration counts: 1 encoder config + 2 agent configs + the ensemble
    assert v['n_trials'] == 4
    assert set(v['agents']) == {'sac_manual', 'sac_scratch'} and 'RL agents under the same checks: sac_manual' in v['sentence']
    va = evaluate(run, write=False, family='sac_manual')
    assert va['candidate'] == 'sac_manual' and {c['name'] for c in va['checks']} == {c['name'] for c in v['checks']}
    with pytest.raises(Exception, match="family 'nope' has no selected configuration"): evaluate(run, write=False, family='nope')


def test_agent_uses_its_folds_checkpoint_and_acts_alone(rl_run):
    run, data = rl_run
    led = Ledger(run).ok()
    for k in (0, 1):
        t = led.filter((pl.col('encoder') == 'sac_manual') & (pl.col('fold') == k)).row(0, named=True)
        ag = load_agent(run / t['checkpoint'])
        assert ag.meta['fold'] == k and ag.meta['frozen_encoder']['encoder'] == 'manual' and ag.frozen is not None
        m = ag.market(data)                                         # its own normalizer and frozen summaries: nothing else needed
        ro = rollout(m, 'test', ag.act)
        p = pl.read_parquet(run / t['predictions']).filter(pl.col('split') == 'test').sort('timestamp')
        assert np.array_equal(ro.decisions['position'].to_numpy(), p['position'].to_numpy())
        # the environment's net PnL is the backtester's on the same positions
        bt = backtest_run(data.bars, ro.decisions.select('timestamp', 'symbol', 'position'), data.config.costs, data.config.backtest,
                          data.calendar, data.freq)
        assert abs(float(ro.bars['net'].sum()) - float(bt.returns['net'].sum())) < 1e-9


def test_agents_replay_bar_by_bar_to_their_batch_positions(rl_run, tmp_path):
    from yooptx.experiments.replay import replay
    run, data = rl_run
    for name in ('sac_manual', 'sac_scratch'):        # frozen-encoder summaries and a scratch encoder inside the policy
        r = replay(run, name, out=tmp_path / name, summaries=False, progress=False)
        assert r.parity['ok'] and r.parity['seeds']['0']['bars'] > 200, (name, r.parity)
        assert r.fills.height > 0
    # a window starting inside a fold: the agent's earlier choices in the fold are replayed first (its observation holds them)
    t = r.positions['timestamp']
    sub = replay(run, 'sac_scratch', start=str(t[t.len() // 3]), out=tmp_path / 'part', summaries=False, progress=False)
    assert sub.parity['ok'], sub.parity
    r = replay(run, 'ensemble:mix', out=tmp_path / 'mix', summaries=False, progress=False)    # an agent as an ensemble member
    assert r.parity['ok'], r.parity


def test_agent_planned_after_encoders_and_refused_without_them():
    cfg = load_config(CFG)
    kinds = [t['kind'] for t in plan_trials(cfg, [0, 1])]
    assert kinds.index('rl') > max(i for i, k in enumerate(kinds) if k == 'encoder')
    with pytest.raises(Exception, match='encoders.manual is not in the experiment'):
        plan_trials(load_config({**CFG, 'encoders': {'manual': {'enabled': False}}}), [0])


def test_rl_report_renders_on_the_run(rl_run, home):
    run, _ = rl_run
    rc, out, err = run_cli('run', 'rl', '--run', run, '-p', 'encoder', 'manual', '--quiet', timeout=600)
    assert rc == 0, err[-3000:]
    from bs4 import BeautifulSoup
    html = (run / 'html' / 'rl.html').read_text()
    soup = BeautifulSoup(html, 'html.parser')
    assert 'sac_manual' in html and 'validation Sharpe' in html
    assert not [s for s in soup.find_all('script') if (s.get('src') or '').startswith('http')]     # opens offline
    assert len(soup.select('div.plotly-graph-div')) >= 4      # learning curves, equity, histogram, actions on price
