"""Tracking and the registry end to end: bake-offs mirrored into an embedded MLflow store, a planted-signal run (GO)
registered and promoted, a noise run (NO-GO) refused, a forced promotion logged, rollback to the previous champion,
two promotions at once serialized, and `yooptx predict models:/…@champion` on bars after the training window."""
import json, threading
import polars as pl
import pytest
from conftest import run_cli
from yooptx.config import load_config
from yooptx.data import DataCatalog
from yooptx.experiments import registry as R
from yooptx.experiments.bakeoff import bakeoff
from yooptx.gate import evaluate
from yooptx.synth import planted_signal, random_walk

CFG = {'encoders': {'cnn': {'params': {'d_model': 16, 'n_layers': 2, 'window': 16, 'batch_size': 128}, 'grid': {'lr': [0.001, 0.003]}}},
       'baselines': ['buy_hold', 'mean_reversion'], 'seeds': [0, 1], 'splits': {'n_folds': 3, 'embargo': 1}, 'budget': {'max_epochs': 2}}


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp('home')
    mp = pytest.MonkeyPatch(); mp.setenv('YOOPTX_HOME', str(home)); mp.delenv('YOOPTX_NO_TRACK', raising=False)
    cat = DataCatalog()
    runs = {}
    for name, bars in (('planted', planted_signal(1400, n_symbols=3, seed=11, sharpe=3.0)), ('noise', random_walk(1400, n_symbols=3, seed=11))):
        f = home / f'{name}.parquet'; bars.write_parquet(f)
        cat.ingest(f, name, freq='1D', calendar='XNYS')
        end = str(bars['timestamp'].unique().sort()[1200])[:10]          # bars after this are new to the model
        cfg = load_config({**CFG, 'data': {'name': name, 'end': end}})
        runs[name] = bakeoff(cfg, run_dir=home / 'runs' / name, progress=False)
        evaluate(runs[name])
    yield home, runs, end
    mp.undo()


def test_runs_are_mirrored_into_mlflow(world):
    home, runs, _ = world
    _, c = R._client(R.resolve_uri())
    assert (home / 'mlflow' / 'mlflow.db').exists()
    exp = c.get_experiment_by_name('yooptx/planted')
    parent = c.search_runs([exp.experiment_id], "tags.`yooptx.run_id` = 'planted'")
    assert len(parent) == 1 and parent[0].data.params['encoders.cnn.params.d_model'] == '16'
    kids = c.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
    assert len(kids) == 2 * 3 * 2 + 2 * 3 and all('test_sharpe' in k.data.metrics for k in kids if k.data.tags['kind'] == 'encoder')


def test_go_promotes_nogo_is_refused_rollback_restores(world, monkeypatch):
    home, runs, end = world
    assert json.loads((runs['planted'] / 'verdict.json').read_text())['verdict'] == 'GO'
    v1 = R.register(runs['planted'])
    assert (v1['name'], v1['version'], v1['semver']) == ('planted-cnn', 1, '1.0.0') and len(v1['checkpoints']) == 3 * 2
    R.promote('planted-cnn', 1)
    bad = R.register(runs['noise'])
    with pytest.raises(R.RegistryError, match=r"refused: verdict_go: the version's verdict is NO-GO"): R.promote(bad['name'], 1)
    v2 = R.register(runs['planted'])                                  # the same run again: a patch
    assert (v2['version'], v2['semver']) == (2, '1.0.1')
    with pytest.raises(R.RegistryError, match='beats_champion'): R.promote('planted-cnn', 2)   # identical returns do not beat it
    with pytest.raises(R.RegistryError, match='--force needs --reason'): R.promote('planted-cnn', 2, force=True)
    # two forced promotions at once: one moves the alias, the other finds it already moved; the log has one entry
    errs = []
    def go():
        try: R.promote('planted-cnn', 2, force=True, reason='same model, new packaging')
        except R.RegistryError as e: errs.append(str(e))
    ts = [threading.Thread(target=go) for _ in range(2)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert len(errs) == 1 and 'already the champion' in errs[0]
    log = [e for e in R.promotion_log() if e['name'] == 'planted-cnn' and e['action'] == 'promote']
    assert [(e['version'], e['from_version'], e['forced']) for e in log] == [(1, None, False), (2, 1, True)]
    assert R.show('planted-cnn@champion')['version'] == 2 and R.show('planted-cnn@previous_champion')['version'] == 1
    e = R.rollback('planted-cnn')
    assert (e['version'], e['from_version']) == (1, 2) and R.show('planted-cnn')['version'] == 1
    with pytest.raises(R.RegistryError, match="no registered model 'nope'; registered: noise-cnn, planted-cnn"): R.show('nope')
    with pytest.raises(R.RegistryError, match='has no version 9'): R.promote('planted-cnn', 9)
    # predictions of the champion on bars it never saw
    rc, out, err = run_cli('predict', 'models:/planted-cnn@champion', '--data', 'planted', '--start', end, '--out', home / 'p.parquet')
    assert rc == 0, err
    p = pl.read_parquet(home / 'p.parquet')
    assert p['symbol'].n_unique() == 3 and p['timestamp'].min() >= pl.Series([end]).str.to_datetime(time_zone='UTC')[0]
    assert p['target'].is_in([-1.0, 0.0, 1.0]).all() and p['prediction'].is_finite().all()
    rc, out, err = run_cli('registry', 'promote', 'noise-cnn', '1')
    assert rc == 2 and 'verdict_go' in err
    rc, out, err = run_cli('predict', 'planted-cnn@champion', '--data', 'btc_1h')
    assert rc == 2 and 'the model was trained on 1D bars on XNYS' in err
    # latency measured after training, in the ledger, the registered version and a promotion check
    led = pl.read_parquet(runs['planted'] / 'ledger.parquet').filter(pl.col('encoder') == 'cnn')
    assert (led['latency_p99_ms'] > 0).all() and (led['latency_p50_ms'] <= led['latency_p99_ms']).all()
    f = R._folder(R._version(R._client(R.resolve_uri())[1], 'planted-cnn', 1))
    (f / 'config.yaml').write_text((f / 'config.yaml').read_text().replace('max_latency_p99_ms: null', 'max_latency_p99_ms: 1.0e-06'))
    lat = next(c for c in R.promotion_checks(R._client(R.resolve_uri())[1], 'planted-cnn', R._version(R._client(R.resolve_uri())[1], 'planted-cnn', 1))
               if c['name'] == 'max_latency_p99_ms')
    assert not lat['passed'] and 'batch-of-one inference p99' in lat['sentence']
    from yooptx.reporting.views import deployment_table, load_run
    d = deployment_table(load_run(runs['planted']))
    assert d.filter(pl.col('item') == 'champion of planted-cnn')['value'][0].startswith('version 1 (1.0.0) from run planted (this run)')
    dest = R.export('planted-cnn@champion', home / 'export')
    assert (dest / 'README.md').exists() and (dest / 'model.json').exists()
    from yooptx.training.checkpoints import load
    assert load(dest / json.loads((dest / 'model.json').read_text())['checkpoints'][0]['path']).features


def test_promotion_refuses_missing_artifacts_and_changed_data(world):
    home, runs, _ = world
    v = R.register(runs['planted'], name='planted-copy')
    _, c = R._client(R.resolve_uri())
    f = R._folder(R._version(c, 'planted-copy', 1))
    (f / v['checkpoints'][0]['path']).unlink()                         # an artifact gone from the version's folder
    bars = random_walk(1400, n_symbols=3, seed=5)                       # the data set re-ingested with other bars
    (home / 'other.parquet').unlink(missing_ok=True); bars.write_parquet(home / 'other.parquet')
    DataCatalog().ingest(home / 'other.parquet', 'planted', freq='1D', calendar='XNYS', overwrite=True)
    with pytest.raises(R.RegistryError) as e: R.promote('planted-copy', 1)
    msg = str(e.value)
    assert 'artifacts: 1 of 6 checkpoint(s) missing' in msg and 'data_unchanged: data set planted now hashes to' in msg
