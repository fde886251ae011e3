"""Run folder and trial ledger: run ids and manifest under $YOOPTX_HOME, config checks on reopening, and atomic ledger
appends from concurrent processes (no row lost, readers never see a partial file)."""
import json, multiprocessing as mp, re, time
from pathlib import Path
import polars as pl
import pytest
from yooptx.config import load_config, to_dict
from yooptx.core import runs_dir
from yooptx.runs import LEDGER_SCHEMA, Ledger, RunError, create_run, gate_changed, open_run, trial_id


def test_create_run_under_home(home):
    cfg = load_config('demo')
    run = create_run(cfg)
    assert run.parent == runs_dir() == home / 'runs'
    assert re.fullmatch(r'\d{8}-\d{6}-[0-9a-f]{6}', run.name)
    assert load_config(run / 'config.yaml') == cfg
    m = json.loads((run / 'manifest.json').read_text())
    assert set(m['packages']) == {'yooptx', 'torch', 'lightning', 'polars', 'numpy', 'transformers'} and m['packages']['polars']
    assert m['gate'] == to_dict(cfg.gate) and m['seeds'] == cfg.seeds and m['data']['name'] == cfg.data.name
    assert m['git']['commit'] is None or re.fullmatch(r'[0-9a-f]{40}', m['git']['commit'])
    assert {'platform', 'cpu_count', 'cuda'} <= set(m['machine'])
    assert not [p for p in run.iterdir() if p.name.startswith('.')]          # no temp files left
    assert create_run(cfg) != run                                             # two runs in one second do not collide
    with pytest.raises(RunError, match=rf"train.batch_size: run has {cfg.train.batch_size}, given 8"):
        open_run(run, load_config('demo', ['train.batch_size=8']))
    assert not gate_changed(run)


def _writer(run_dir, k, n):
    led = Ledger(run_dir)
    for i in range(n):
        led.append({'trial_id': trial_id('w', f'p{k}', i, 0), 'encoder': f'w{k}', 'fold': i, 'seed': 0, 'status': 'ok', 'val_metric': float(i)})


def _reader(run_dir, stop_at, out):
    led, reads, errs = Ledger(run_dir), 0, 0
    while time.time() < stop_at:
        try:
            df = led.read(); reads += 1
            assert df.schema == pl.Schema(LEDGER_SCHEMA)
        except Exception: errs += 1
    out.put((reads, errs))


def test_ledger_concurrent_appends_lose_nothing(tmp_path):
    ctx = mp.get_context('spawn')
    n_proc, n_rows = 4, 15
    q = ctx.Queue()
    rd = ctx.Process(target=_reader, args=(tmp_path, time.time() + 8, q)); rd.start()
    ws = [ctx.Process(target=_writer, args=(tmp_path, k, n_rows)) for k in range(n_proc)]
    for w in ws: w.start()
    for w in ws: w.join(120); assert w.exitcode == 0
    rd.join(60)
    reads, errs = q.get(timeout=10)
    df = Ledger(tmp_path).read()
    assert df.height == n_proc * n_rows and df['trial_id'].n_unique() == n_proc * n_rows
    for k in range(n_proc):                                                   # each writer's rows arrive in its own order
        assert df.filter(pl.col('encoder') == f'w{k}')['fold'].to_list() == list(range(n_rows))
    assert errs == 0 and reads > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.ledger.lock', 'ledger.parquet']


def test_ledger_resume_and_schema(tmp_path):
    led = Ledger(tmp_path)
    assert led.read().height == 0 and not led.done('x')
    led.append({'trial_id': 'a/1/fold0/seed0', 'encoder': 'a', 'status': 'failed', 'error': 'boom', 'started': '2026-11-25T11:15:00Z'})
    assert not led.done('a/1/fold0/seed0')
    led.append(pl.DataFrame({'trial_id': ['a/1/fold0/seed0'], 'encoder': ['a'], 'status': ['ok'], 'fold': [0]}))
    assert led.done('a/1/fold0/seed0') and led.ok().height == 1
    df = led.read()
    assert df.schema == pl.Schema(LEDGER_SCHEMA) and str(df['started'][0]) == '2026-11-25 11:15:00+00:00'
    with pytest.raises(RunError, match="needs a 'status'"): led.append({'trial_id': 'b', 'encoder': 'b'})
    (tmp_path / 'ledger.parquet').write_bytes(b'garbage')
    with pytest.raises(RunError, match='cannot read the ledger'): led.read()
