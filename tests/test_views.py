"""Report views (yooptx.views) on a tiny real bake-off, and the run notebooks train / walk_forward / go_no_go executed with papermill."""
import json, math, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

REPO = Path(__file__).resolve().parents[1]
PAPERMILL = Path(sys.executable).parent / 'papermill'
TINY = {'data': {'name': 'planted'},
        'encoders': {'transformer': {'params': {'d_model': 16, 'n_heads': 2, 'window': 16, 'feature_gate': True}},
                     'lstm': {'params': {'d_model': 8, 'window': 16}}},
        'ensembles': {'e': {'members': ['lstm', 'transformer']}}, 'baselines': ['buy_hold', 'momentum', 'ridge'],
        'seeds': [0, 1], 'splits': {'n_folds': 3}, 'budget': {'max_epochs': 2}}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A scratch $YOOPTX_HOME holding a planted-signal data set in its catalog, the experiment YAML, and a finished bake-off on it."
    import yaml
    from yooptx.experiments.bakeoff import bakeoff
    from yooptx.config import load_config
    from yooptx.core import runs_dir
    from yooptx.data import DataCatalog
    from yooptx.synth import planted_signal
    home = tmp_path_factory.mktemp('home')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('YOOPTX_HOME', str(home))
        src = home / 'planted.parquet'
        planted_signal(700, n_symbols=2, seed=3, sharpe=3.0).write_parquet(src)
        DataCatalog().ingest(src, 'planted', calendar='XNYS', freq='1D')
        cfg_path = home / 'tiny.yaml'
        cfg_path.write_text(yaml.safe_dump(TINY))
        run = bakeoff(load_config(cfg_path), run_dir=runs_dir() / '20260101-000000-tiny', progress=False)
        yield dict(home=home, config=cfg_path, run=run)


@pytest.fixture
def env(tiny, monkeypatch):
    monkeypatch.setenv('YOOPTX_HOME', str(tiny['home']))
    return tiny


@pytest.fixture
def view(env):
    from yooptx.reporting import views
    return views.load_run(env['run'])


# ---------------------------------------------------------------- locating runs

def test_latest_run(tmp_path, monkeypatch):
    from yooptx.reporting import views
    from yooptx.core import UserError
    monkeypatch.setenv('YOOPTX_HOME', str(tmp_path))
    with pytest.raises(UserError, match=r'no run folder under .*run `yooptx bakeoff CONFIG` first'): views.latest_run()
    root = tmp_path / 'runs'
    for name, marker, t in (('a', 'selection.json', 100), ('b', 'verdict.json', 300), ('c', 'selection.json', 200), ('d', None, 400)):
        (root / name).mkdir(parents=True)
        if marker: (root / name / marker).write_text('{}'); os.utime(root / name / marker, (t, t))
    assert views.latest_run() == root / 'b'                 # d is newer but unfinished (no selection/verdict)
    os.utime(root / 'c' / 'selection.json', (500, 500))
    assert views.latest_run() == root / 'c'
    assert views.resolve_run('') == root / 'c'
    with pytest.raises(UserError, match='does not exist'): views.resolve_run(tmp_path / 'nope')


def test_load_run_and_families(view, env):
    sel = json.loads((env['run'] / 'selection.json').read_text())
    assert view.candidate == 'candidate' and view.pairs['candidate'] == ('candidate', sel['candidate_params_hash'])
    assert view.candidate_label == sel['candidate_label']
    assert view.baselines == ['buy_hold', 'momentum', 'ridge']
    assert view.families[0] == 'candidate' and set(view.families) == {'candidate', *sel['families']}
    assert view.periods_per_year == pytest.approx(252, abs=1)


# ---------------------------------------------------------------- tables

def test_fold_seed_tables(view):
    from yooptx.reporting import views
    fs = views.fold_seed_table(view)
    bt = view.backtest
    seeds = {f: bt.filter((pl.col('encoder') == e) & (pl.col('params_hash') == h))['seed'].n_unique() for f, (e, h) in view.pairs.items()}
    assert fs.height == 3 * sum(seeds.values())                      # one row per family x fold x seed
    assert not fs.select('family', 'fold', 'seed').is_duplicated().any()
    assert set(fs['family']) == set(view.families)
    # by hand: fold 1 of ridge is the bars between fold 1's and fold 2's first test timestamps
    p = view.predictions.filter(pl.col('split') == 'test')
    t1, t2 = (p.filter(pl.col('fold') == k)['timestamp'].min() for k in (1, 2))
    h = view.pairs['ridge'][1]
    r = bt.filter((pl.col('encoder') == 'ridge') & (pl.col('params_hash') == h) & (pl.col('timestamp') >= t1) & (pl.col('timestamp') < t2))['net'].to_numpy()
    got = fs.filter((pl.col('family') == 'ridge') & (pl.col('fold') == 1))
    assert got['n_bars'][0] == r.size
    assert got['net_sharpe'][0] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(view.periods_per_year), rel=1e-9)
    ft = views.fold_table(view)
    assert ft['fold'].to_list() == [0, 1, 2] and all(f in ft.columns for f in view.families)
    st = views.seed_table(view)
    assert st['seed'].to_list() == [0, 1] and st.columns[1:] == view.families
    assert st.filter(pl.col('seed') == 1)['buy_hold'][0] is None   # deterministic baseline: one seed


def test_metrics_and_equity(view):
    from yooptx.reporting import views
    rets = views.family_returns(view)
    assert list(rets) == view.families
    mt = views.metrics_table(rets, view.periods_per_year)
    assert mt['strategy'].to_list() == view.families
    # the candidate's net Sharpe is the gate's (seed-averaged) net Sharpe estimate
    v = views.run_verdict(view)
    ci = next(c for c in v['checks'] if c['name'] == 'net_sharpe_ci')
    assert mt['net_sharpe'][0] == pytest.approx(ci['details']['estimate'], rel=1e-9)
    fig = views.equity_figure(rets, baselines=view.baselines)
    names = [t.name for t in fig.data]
    assert sorted(names) == sorted(view.families + [f'{view.candidate} drawdown']) and names[0] == view.candidate   # one trace each (+ drawdown)
    best = max(view.baselines, key=lambda b: views._series_sharpe(rets[b]))
    assert names[1] == best and sum(t.visible != 'legendonly' for t in fig.data) <= 6 + 1          # at most 6 lines drawn (+ drawdown)
    fig = views.equity_figure(views.family_returns(view, view.candidate_and_baselines), baselines=view.baselines)
    assert sorted(t.name for t in fig.data[:-1]) == sorted([view.candidate, 'buy_hold', 'momentum', 'ridge'])
    assert fig.layout.title.text and fig.layout.yaxis.title.text


def test_cost_sensitivity(view):
    "Reruns of the backtest at scaled costs: 1x reproduces the bake-off's backtest.parquet; the closed form is close; more cost, less Sharpe."
    from yooptx.reporting import views
    cs = views.cost_sensitivity(view, multiples=(0.0, 1.0, 3.0))
    assert cs.height == 3 * len(view.families) and set(cs['method']) == {'backtest'}
    mt = views.metrics_table(views.family_returns(view), view.periods_per_year)
    one = cs.filter(pl.col('multiple') == 1.0)
    assert one['family'].to_list() == mt['strategy'].to_list()
    np.testing.assert_allclose(one['net_sharpe'].to_numpy(), mt['net_sharpe'].to_numpy(), rtol=1e-9)
    cf = views.cost_sensitivity(view, multiples=(0.0, 1.0, 3.0), exact=False)
    assert set(cf['method']) == {'closed form'}
    np.testing.assert_allclose(cf.filter(pl.col('multiple') == 1.0)['net_sharpe'].to_numpy(), mt['net_sharpe'].to_numpy(), rtol=1e-9)
    trading = cs.filter(~pl.col('family').is_in(['buy_hold']))
    np.testing.assert_allclose(cf.filter(~pl.col('family').is_in(['buy_hold']))['net_sharpe'].to_numpy(), trading['net_sharpe'].to_numpy(), atol=0.05)
    for f, g in cs.group_by('family'):
        x = g.sort('multiple')['net_sharpe'].to_numpy()
        assert (np.diff(x) <= 1e-12).all(), f
    fig = views.cost_sensitivity_figure(cs, view.assumed_cost_bps, baselines=view.baselines)
    assert len(fig.data) == len(view.families) and 'cost multiple' in fig.layout.xaxis.title.text
    # the candidate first, then the best baseline at 1x; every line its own colour
    at1 = {f: g.filter(pl.col('multiple') == 1.0)['net_sharpe'][0] for (f,), g in cs.group_by('family')}
    assert fig.data[0].name == view.candidate and fig.data[1].name == max(view.baselines, key=at1.get)
    assert len({t.line.color for t in fig.data}) == len(fig.data)
    many = pl.concat([cs.with_columns(family=pl.col('family') + f'_{k}') for k in range(3)])   # 3x the families: the rest one click away
    fig = views.cost_sensitivity_figure(many, baselines=[f'{b}_0' for b in view.baselines])
    assert sum(t.visible != 'legendonly' for t in fig.data) == 6 and len(fig.data) == 3 * len(view.families)


def test_ic_and_rolling_sharpe(view):
    from yooptx.reporting import views
    sig = views.signal_frame(view, 'lstm')
    assert sig.height == view.predictions.filter((pl.col('params_hash') == view.pairs['lstm'][1]) & (pl.col('split') == 'test') & (pl.col('seed') == 0)).height
    ic = views.rolling_ic(sig, 30)
    ts = ic['timestamp']
    w = sig.filter(pl.col('timestamp').is_in(ts[40:70].implode()))
    assert ic['ic'][69] == pytest.approx(sps.spearmanr(w['prediction'], w['fwd_return']).statistic, abs=1e-12)
    assert ic['ic'][:29].null_count() == 29
    fig = views.ic_figure(view, 'lstm', window=30)
    assert fig.layout.yaxis.title.text.startswith('Spearman IC') and len(fig.data[0].x) == ts.len()
    fig = views.rolling_sharpe_figure(view, window=20)
    assert sorted(t.name for t in fig.data) == sorted(view.families) and fig.data[0].name == view.families[0]   # the candidate first


def test_calibration(view):
    from yooptx.reporting import views
    fam = views.calibration_family(view)
    assert fam in view.candidates
    rel, conf = views.calibration_figures(view)
    e, h = view.pairs[fam]
    n = view.predictions.filter((pl.col('encoder') == e) & (pl.col('params_hash') == h) & (pl.col('split') == 'test') & pl.col('label').is_not_null()).height
    assert int(np.asarray(conf.data[0].text).sum()) == n
    assert views.calibration_family(view, 'momentum') is None       # a baseline without probabilities
    r0, c0 = views.calibration_figures(view, 'momentum')
    assert 'not available' in r0.layout.title.text


# ---------------------------------------------------------------- verdict

def test_verdict_views(view):
    from yooptx.reporting import views
    v = views.run_verdict(view)
    ct = views.checks_table(v)
    assert ct['check'].to_list() == [c['name'] for c in v['checks']]
    assert ct['result'].to_list() == [{True: 'PASS', False: 'FAIL', None: 'SKIP'}[c['passed']] for c in v['checks']]
    banner = views.verdict_banner(v).data
    assert v['verdict'] in banner and ('#1a7f37' if v['verdict'] == 'GO' else '#cf222e') in banner
    st = views.statistics_table(view, v)
    names = ' '.join(st['statistic'])
    for s in ('net Sharpe', 'CI', 'deflated', 'configurations counted by the DSR', 'Diebold', 'overfitting', 'seed spread', 'break-even'): assert s in names, s
    assert st.filter(pl.col('statistic') == 'configurations counted by the DSR')['value'][0] == str(v['n_trials'])
    failed = [c for c in v['checks'] if c['passed'] is False]
    ww = views.what_would_change(v, view.periods_per_year, len(view.config.seeds))
    assert len(ww) == (len(failed) or 1)                            # one statement per failed check
    mt = views.manifest_table(view)
    m = json.loads((view.path / 'manifest.json').read_text())
    item = dict(mt.iter_rows())
    assert item['git commit'] == str(m['git']['commit']) and item['data sha256'] == m['data']['sha256'] and item['data set'] == 'planted'
    assert item['seeds'] == '0, 1' and 'package torch' in item and 'machine python' in item


def _verdict(checks, n=504):
    return {'verdict': 'NO-GO', 'candidate': 'x', 'n_test_bars': n, 'test_start': '2020-01-01 00:00:00+00:00', 'test_end': '2021-12-31 00:00:00+00:00',
            'sentence': 'NO-GO', 'checks': checks}

def test_what_would_change_numbers():
    "Each statement's numbers follow from the Sharpe standard error (1/sqrt(T) scaling) and the DSR formula."
    from yooptx.reporting import views
    from yooptx.stats import psr_from_moments
    ci = {'name': 'net_sharpe_ci', 'value': -0.4, 'threshold': 0.0, 'passed': False, 'details': {'estimate': 1.0, 'low': -0.4, 'high': 2.4}}
    [s] = views.what_would_change(_verdict([ci]), periods_per_year=252)
    assert 'about 1.9 years more test data' in s                    # (1.4/1.0)^2 = 1.96 x 2 years -> 1.9 more
    dsr = {'name': 'deflated_sharpe', 'value': 0.5, 'threshold': 0.95, 'passed': False,
           'details': {'n_trials': 12, 'sr0_annualized': 1.0, 'trial_sharpe_std_annualized': 0.5, 'psr': 0.9}}
    s = views.what_would_change(_verdict([ci, dsr]), periods_per_year=252)[1]
    x = float(s.split('at least ')[1].split(' ')[0])
    assert psr_from_moments(x / math.sqrt(252), 504, sr_benchmark=1 / math.sqrt(252)) == pytest.approx(0.95, abs=2e-3)
    assert 'with 12 configurations counted' in s
    dm = {'name': 'beats_best_baseline', 'value': 0.5, 'threshold': 0.05, 'passed': False, 'details': {'best_baseline': 'buy_hold', 'baseline_sharpes': {'buy_hold': 2.0}}}
    assert 'must beat buy_hold bar for bar' in views.what_would_change(_verdict([ci, dm]), periods_per_year=252)[1]
    be = {'name': 'break_even_cost', 'value': 1.5, 'threshold': 3.0, 'passed': False}
    assert 'i.e. double' in views.what_would_change(_verdict([be]))[0]
    assert views.what_would_change(_verdict([{**be, 'passed': True}])) == ['Nothing: every computable check passed.']


# ---------------------------------------------------------------- train views

def test_train_encoder_new_and_existing_run(env):
    from yooptx.reporting import trainviews, views
    from yooptx.core import UserError
    from yooptx.runs import Ledger
    te = trainviews.train_encoder(str(env['config']), 'lstm', seed=1, epochs=1, folds='2')
    assert te.path.parent == env['home'] / 'runs' and te.seeds == [1] and te.folds == [2]
    led = Ledger(te.path).read()
    assert led.height == 1 and led['fold'].to_list() == [2] and led['seed'].to_list() == [1] and led['n_epochs'][0] == 1
    again = trainviews.train_encoder(run_dir=te.path, encoder='lstm', folds='2')
    assert again.seeds == [1] and Ledger(te.path).read().height == 1            # the run's own config; nothing retrained
    bt = trainviews.encoder_backtest(again)
    assert set(bt['encoder']) == {'lstm', 'buy_hold', 'momentum', 'ridge'}
    rets = trainviews.encoder_returns(bt, 'lstm')
    assert list(rets)[0] == 'lstm'
    assert len(views.equity_figure(rets).data) == 4 + 1
    curves = trainviews.learning_curves(te.path, 'lstm')
    assert set(curves.select('fold', 'seed').unique().rows()) == {(2, 1)} and {'train_loss_epoch', 'val_sharpe'} <= set(curves['tag'])
    assert trainviews.validation_table(te.path, 'lstm').height == 1
    with pytest.raises(UserError, match=r"folds \[7\] do not exist"): trainviews.train_encoder(str(env['config']), 'lstm', folds='7')
    with pytest.raises(UserError, match="encoder 'cnn' is not in the encoders section"): trainviews.train_encoder(str(env['config']), 'cnn')


# ---------------------------------------------------------------- the notebooks

def _outputs(nb_path):
    nb = json.loads(Path(nb_path).read_text())
    outs = [o for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])]
    html = [''.join(o['data']['text/html']) for o in outs if 'text/html' in o.get('data', {})]
    return nb, outs, html

def _check_executed(path, n_figures, n_tables):
    nb, outs, html = _outputs(path)
    assert not [o for o in outs if o['output_type'] == 'error']
    figs = [h for h in html if 'plotly-graph-div' in h and 'Plotly.newPlot' in h]
    tables = [h for h in html if '<table' in h]
    assert len(figs) >= n_figures and len(tables) >= n_tables, (len(figs), len(tables))
    js = [h for h in html if 'window.PlotlyConfig' in h]
    assert len(js) == 1 and len(js[0]) > 1_000_000                      # plotly.js embedded once
    assert not any('<script src="http' in h or "<script src='http" in h for h in html)   # no CDN
    return nb, html

def _papermill(nb, out, cwd, *params, timeout=400):
    args = [str(PAPERMILL), str(nb), str(out), '-k', 'python3', '--no-progress-bar']
    for k, v in params: args += ['-p', k, str(v)]
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    assert p.returncode == 0, p.stderr[-3000:]

def test_walk_forward_notebook(env, tmp_path):
    import papermill as pm
    out = tmp_path / 'wf.ipynb'
    pm.execute_notebook(str(REPO / 'reports' / 'walk_forward.ipynb'), str(out), parameters={'run_dir': ''}, kernel_name='python3',
                        progress_bar=False, cwd=str(tmp_path))               # '' = the latest run of $YOOPTX_HOME
    nb, html = _check_executed(out, n_figures=6, n_tables=4)
    assert str(env['run'].name) in ''.join(''.join(o.get('data', {}).get('text/plain', '')) for c in nb['cells'] for o in c.get('outputs', []))

def test_go_no_go_notebook_writes_a_missing_verdict(env, tmp_path):
    import papermill as pm
    run = tmp_path / 'runcopy'
    shutil.copytree(env['run'], run, ignore=shutil.ignore_patterns('checkpoints', 'tb'))
    (run / 'verdict.json').unlink(missing_ok=True)
    out = tmp_path / 'gng.ipynb'
    pm.execute_notebook(str(REPO / 'reports' / 'go_no_go.ipynb'), str(out), parameters={'run_dir': str(run)}, kernel_name='python3',
                        progress_bar=False, cwd=str(REPO / 'reports'))
    v = json.loads((run / 'verdict.json').read_text())
    nb, html = _check_executed(out, n_figures=1, n_tables=5)
    assert any(v['sentence'].split(':')[0] in h and ('NO-GO' in h or 'GO' in h) for h in html if 'border-radius' in h)
    md = [''.join(o['data']['text/markdown']) for c in nb['cells'] for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
    assert len(md) == 2 and md[0].count('\n- ') + 1 == len(v['checks'])

def test_train_notebook_cwd_independent(env, tmp_path):
    "`papermill reports/train.ipynb OUT -p encoder ...` from the repo root, and `cd reports && papermill train.ipynb ...`."
    from yooptx.runs import Ledger
    before = set((env['home'] / 'runs').iterdir())
    out1 = tmp_path / 'train1.ipynb'
    _papermill('reports/train.ipynb', out1, REPO, ('config', env['config']), ('encoder', 'transformer'), ('epochs', 1), ('folds', '0'))
    new = set((env['home'] / 'runs').iterdir()) - before
    assert len(new) == 1
    run = new.pop()
    assert Ledger(run).read().height == 1
    _check_executed(out1, n_figures=3, n_tables=3)
    out2 = tmp_path / 'train2.ipynb'
    _papermill('train.ipynb', out2, REPO / 'reports', ('run_dir', run), ('encoder', 'transformer'), ('folds', '0'))
    assert Ledger(run).read().height == 1                                  # finished trials are not retrained
    assert set((env['home'] / 'runs').iterdir()) - before == {run}
    _check_executed(out2, n_figures=3, n_tables=3)

def test_html_render_is_offline(env, tmp_path):
    "nbconvert's HTML of an executed report: figures present, plotly.js inline once, no external script."
    import papermill as pm
    out = tmp_path / 'gng.ipynb'
    pm.execute_notebook(str(REPO / 'reports' / 'go_no_go.ipynb'), str(out), parameters={'run_dir': str(env['run'])}, kernel_name='python3', progress_bar=False)
    p = subprocess.run([str(Path(sys.executable).parent / 'jupyter'), 'nbconvert', '--to', 'html', str(out), '--output-dir', str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    h = (tmp_path / 'gng.html').read_text()
    assert h.count('class="plotly-graph-div"') >= 1 and h.count('window.PlotlyConfig') == 1
    import re
    ext = [s for s in re.findall(r'<script[^>]*src=["\']([^"\']+)', h) if s.startswith(('http:', 'https:', '//'))]
    # nbconvert's own template still links require.js and MathJax 2 (the runner, yooptx.reports, strips or inlines them);
    # nothing the report's outputs add may load from the network (plotly 7's renderer would add MathJax 3 per figure)
    assert not [s for s in ext if not ('require.js' in s or 'mathjax/2.' in s)], ext


def test_committed_report_notebooks_are_clean():
    import papermill as pm
    want = {'train': {'config', 'encoder', 'seed', 'epochs', 'folds', 'run_dir'}, 'walk_forward': {'run_dir'}, 'go_no_go': {'run_dir'},
            'rl': {'config', 'encoder', 'mode', 'dataset', 'timesteps', 'seed', 'run_dir'}}
    for name, params in want.items():
        path = REPO / 'reports' / f'{name}.ipynb'
        nb = json.loads(path.read_text())
        assert nb['metadata']['kernelspec']['name'] == 'python3'
        assert all(not c.get('outputs') and c.get('execution_count') is None for c in nb['cells'] if c['cell_type'] == 'code'), name
        assert set(pm.inspect_notebook(str(path))) == params
        tagged = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1
        # no logic of their own: no def / class / loops / imports other than the view modules (yooptx.views, yooptx.trainviews)
        code = '\n'.join(l.split('#')[0] for c in nb['cells'] if c['cell_type'] == 'code' for l in ''.join(c['source']).splitlines())
        for bad in ('def ', 'class ', 'for ', 'while ', 'lambda'): assert bad not in code, (name, bad)
        mods = {'train': 'trainviews, views', 'rl': 'rlviews as R, views'}.get(name, 'views')
        assert [l for l in code.splitlines() if l.startswith(('import', 'from'))] == [f"from yooptx.reporting import {mods}"]


def test_ic_figure_cross_sectional():
    "With 3 or more symbols the IC is the cross-sectional Spearman correlation per date."
    import datetime as dt
    from yooptx.reporting import views
    rng = np.random.default_rng(0); T, S = 60, 4
    ts = pl.datetime_range(dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1) + dt.timedelta(days=T - 1), '1d', time_zone='UTC', eager=True)
    sig = rng.standard_normal(T * S)
    p = pl.DataFrame({'timestamp': ts.to_list() * S, 'symbol': np.repeat([f's{i}' for i in range(S)], T), 'encoder': 'x', 'params_hash': 'h',
                      'split': 'test', 'seed': 0, 'fold': 0, 'prediction': sig, 'fwd_return': sig + rng.standard_normal(T * S), 'label': 1.0})
    rv = views.RunView(Path('/nonexistent'), None, {}, None, p, None, {'candidate': 'x', 'families': {'x': {'params_hash': 'h'}}}, {}, None, 252.0)
    fig = views.ic_figure(rv)
    assert [t.type for t in fig.data] == ['bar', 'scatter'] and 'cross-sectional' in fig.layout.title.text
    d0 = p.filter(pl.col('timestamp') == ts[0])
    assert fig.data[0].y[0] == pytest.approx(sps.spearmanr(d0['prediction'], d0['fwd_return']).statistic, abs=1e-12)
