"""Hostile and clumsy input, kept as permanent regressions: no code runs from a YAML python tag (in a file, in --set, in a
run's config.yaml) or from a checkpoint's pickle payload; YAML alias bombs and duplicate keys are refused; a tampered
verdict.json is caught; one process at a time on a run folder; an empty bake-off fails loudly; a report never writes
into a folder that is not a run."""
import json, os
from pathlib import Path
import pytest
import torch
import yaml
from conftest import run_cli, tree
from yooptx.config import ConfigError, load_config
from yooptx.experiment import prepare
from yooptx.experiments.bakeoff import bakeoff
from yooptx.gate import evaluate
from yooptx.runs import read_run_config, session
from yooptx.synth import random_walk

TINY = {'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 1, 'window': 8, 'batch_size': 256}}},
        'baselines': ['buy_hold', 'momentum'], 'seeds': [0, 1], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 1}}


def test_no_code_runs_from_yaml_python_tags(tmp_path):
    flag = tmp_path / 'pwned'
    evil = f"seeds: !!python/object/apply:os.system ['touch {flag}']\n"
    y = tmp_path / 'evil.yaml'; y.write_text(evil)
    with pytest.raises(ConfigError): load_config(y)
    with pytest.raises(ConfigError): load_config('demo', [f"seeds=!!python/object/apply:os.system ['touch {flag}']"])
    run = tmp_path / 'run'; run.mkdir(); (run / 'config.yaml').write_text(evil)
    with pytest.raises(ConfigError): read_run_config(run)
    assert not flag.exists()


def test_yaml_alias_bomb_and_duplicate_keys_are_refused(tmp_path):
    bomb = "a: &a [0,0,0,0,0,0,0,0,0,0]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nseeds: [*c,*c,*c]\n"
    y = tmp_path / 'bomb.yaml'; y.write_text(bomb)
    with pytest.raises(ConfigError, match=r'line 2: YAML aliases \(\*name\) are not allowed'): load_config(y)
    y.write_text("seeds: [0]\nbaselines: [buy_hold]\nseeds: [1]\n")
    with pytest.raises(ConfigError, match="duplicate key 'seeds' on lines 1 and 3"): load_config(y)
    with pytest.raises(ConfigError, match=r'seeds: \[0, 0\] repeats a seed'): load_config({'seeds': [0, 0]})


def test_a_pickle_payload_in_a_checkpoint_never_runs(tmp_path):
    from yooptx.training.checkpoints import CheckpointError, load
    flag = tmp_path / 'pwned'
    class Evil:
        def __reduce__(self): return (os.system, (f"touch {flag}",))
    torch.save({'yooptx': {'version': 1}, 'state_dict': {}, 'x': Evil()}, tmp_path / 'evil.ckpt')
    with pytest.raises(CheckpointError, match='corrupted or not a torch checkpoint'): load(tmp_path / 'evil.ckpt')
    assert not flag.exists()


@pytest.fixture(scope='module')
def noise_run(tmp_path_factory):
    cfg = load_config(TINY)
    run = bakeoff(cfg, data=prepare(cfg, bars=random_walk(500, seed=3), calendar='XNYS'), run_dir=tmp_path_factory.mktemp('h') / 'run',
                  progress=False)
    evaluate(run)
    return run


def test_a_tampered_verdict_is_caught(noise_run):
    from yooptx.reporting import runner, views
    p = noise_run / 'verdict.json'
    v = json.loads(p.read_text())
    assert v['verdict'] == 'NO-GO'
    good = p.read_text()
    p.write_text(json.dumps(v | {'verdict': 'GO', 'sentence': 'GO: all good.'}))
    try:
        shown = views.run_verdict(views.load_run(noise_run))
        assert shown['verdict'] == 'NO-GO' and 'verdict.json says GO but the run' in shown['warning']
        assert 'verdict.json says GO' in views.verdict_banner(shown).data
        assert runner.run_summary(noise_run)['verdict'] == 'ALTERED'
    finally: p.write_text(good)
    assert runner.run_summary(noise_run)['verdict'] == 'NO-GO'


def test_one_process_at_a_time_on_a_run(noise_run, tmp_path):
    y = tmp_path / 'exp.yaml'; y.write_text((noise_run / 'config.yaml').read_text())
    cfg = read_run_config(noise_run)
    data = prepare(cfg, bars=random_walk(500, seed=3), calendar='XNYS')
    with session(cfg, data, noise_run):                   # this process holds the run
        before = tree(noise_run)
        rc, out, err = run_cli('bakeoff', y, '--run', noise_run, '--quiet', '--no-track')
        assert rc == 2 and f'run {noise_run} is in use by another yooptx process (pid {os.getpid()})' in err, err
        assert {k: v for k, v in tree(noise_run).items() if not k.startswith('.')} == {k: v for k, v in before.items() if not k.startswith('.')}


def test_empty_bakeoff_fails_loudly_and_reports_refuse_non_runs(home, tmp_path, monkeypatch, capsys):
    import yooptx.training.driver as W
    from yooptx.cli import main
    def boom(*a, **k): raise RuntimeError('CUDA out of memory (simulated)')
    monkeypatch.setattr(W, 'train_trial', boom)          # every encoder trial fails; the baselines finish
    y = tmp_path / 'exp.yaml'
    y.write_text(yaml.safe_dump(dict(TINY, data={'name': 'btc_1d'}, seeds=[0], baselines=['buy_hold'])))
    rc = main(['bakeoff', str(y), '--quiet', '--no-track', '--jobs', '1'])
    err = capsys.readouterr().err
    assert rc == 1 and 'no candidate to judge: 2 trial(s) failed' in err and 'simulated' in err, (rc, err)
    d = tmp_path / 'not_a_run'; d.mkdir()
    rc, out, err = run_cli('run', 'go_no_go', '--run', d)
    assert rc == 2 and 'is not a run (no config.yaml)' in err and not any(d.iterdir()), err


def test_corrupt_run_files_a_file_as_run_and_a_full_disk_are_user_errors(noise_run, tmp_path, monkeypatch, capsys):
    import errno
    from yooptx.cli import main
    sel = noise_run / 'selection.json'; good = sel.read_text()
    sel.write_text(good[:40])                                       # truncated
    try:
        rc, out, err = run_cli('gate', noise_run, '--no-track')
        assert rc == 2 and f"{sel} is unreadable (JSONDecodeError" in err and 'this is a bug' not in err, err
    finally: sel.write_text(good)
    f = tmp_path / 'a_file'; f.write_text('x')
    y = tmp_path / 'exp.yaml'; y.write_text((noise_run / 'config.yaml').read_text())
    rc, out, err = run_cli('bakeoff', y, '--run', f, '--quiet', '--no-track')
    assert rc == 2 and f"--run {f} is a file, not a run folder" in err, err
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device', str(noise_run / 'verdict.json'))
    monkeypatch.setattr('yooptx.gate.atomic_write', full)
    rc = main(['gate', str(noise_run), '--no-track'])
    err = capsys.readouterr().err
    assert rc == 2 and 'the disk is full (No space left on device' in err and 'this is a bug' not in err, err


def _children(pid: int) -> list[int]:
    "Live child processes of `pid` (from /proc)."
    out = []
    for st in Path('/proc').glob('[0-9]*/stat'):
        try: f = st.read_text().rsplit(')', 1)[1].split()
        except OSError: continue
        if int(f[1]) == pid and f[0] != 'Z': out.append(int(st.parent.name))
    return out


def _alive(pid: int) -> bool:
    try: return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False


def _wait(cond, timeout: float) -> bool:
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond(): return True
        time.sleep(0.2)
    return cond()


@pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason='reads /proc')
def test_sigterm_stops_cleanly_and_sigkill_leaves_no_orphan_workers(home, tmp_path):
    import signal, subprocess
    from conftest import REPO, YOOPTX
    y = tmp_path / 'exp.yaml'
    slow = {'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 1, 'window': 8, 'batch_size': 32}}},
            'baselines': ['buy_hold'], 'seeds': [0, 1, 2], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 50}}
    y.write_text(yaml.safe_dump(dict(slow, data={'name': 'btc_1d'})))
    env = dict(os.environ, YOOPTX_NO_TRACK='1')
    for sig, rc_expected in ((signal.SIGTERM, 143), (signal.SIGKILL, -9)):
        run = tmp_path / f'run_{sig.name}'
        p = subprocess.Popen([str(YOOPTX), 'bakeoff', str(y), '--run', str(run), '--jobs', '2', '--quiet'], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        workers = []
        def pool_started():                              # two spawned workers (plus multiprocessing's resource tracker)
            workers[:] = [c for c in _children(p.pid) if 'spawn_main' in Path(f'/proc/{c}/cmdline').read_bytes().decode(errors='replace')]
            return len(workers) == 2
        assert _wait(pool_started, 120), (p.poll(), p.stderr.read() if p.poll() is not None else '')
        helpers = _children(p.pid)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
        assert p.returncode == rc_expected, (sig, p.returncode, err)
        if sig == signal.SIGTERM: assert 'terminated (SIGTERM)' in err and 'Traceback' not in err, err
        assert _wait(lambda: not any(_alive(c) for c in helpers), 15), [c for c in helpers if _alive(c)]


def test_a_window_longer_than_a_fold_is_refused_at_plan_time_and_its_fix_works(tmp_path):
    import re
    from yooptx.core import UserError
    cfg = load_config(dict(TINY, seeds=[0]), ['encoders.cnn.params.window=2000'])
    data = prepare(cfg, bars=random_walk(500, seed=3), calendar='XNYS')
    with pytest.raises(UserError, match=r"encoder 'cnn' reads windows of 2000 bars \(encoders.cnn.params.window\) but the training rows of fold\(s\) 0, 1 have at most \d+, \d+ bars") as e:
        bakeoff(cfg, data=data, run_dir=tmp_path / 'run', progress=False)
    assert not (tmp_path / 'run').exists()
    fix = re.search(r'--set (\S+)\)', str(e.value)).group(1)
    cfg = load_config(dict(TINY, seeds=[0]), [fix])
    run = bakeoff(cfg, data=prepare(cfg, bars=random_walk(500, seed=3), calendar='XNYS'), run_dir=tmp_path / 'run', progress=False)
    assert json.loads((run / 'selection.json').read_text())['candidate'] == 'cnn'


def test_a_checkpoint_declaring_huge_sizes_is_refused_before_allocating(noise_run, tmp_path):
    import resource
    from yooptx.training.checkpoints import CheckpointError, load
    src = next((noise_run / 'checkpoints').rglob('*.ckpt'))
    load(src)                                                   # the real one loads
    ck = torch.load(src, map_location='cpu', weights_only=True)
    for d in (12000, 10 ** 6):
        bad = tmp_path / f'd{d}.ckpt'
        torch.save({**ck, 'yooptx': {**ck['yooptx'], 'encoder_params': {**ck['yooptx']['encoder_params'], 'd_model': d}}}, bad)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(CheckpointError, match=rf"checkpoint {bad}: (weights do not fit the model its metadata describes .*declared|its metadata describes a model that cannot be built)"):
            load(bad)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000     # KiB: nothing near the 1.1 GB it used to take


def test_small_ones(home, tmp_path, monkeypatch, capsys):
    import stat, warnings
    import numpy as np, polars as pl
    import yooptx.experiments.bakeoff as B
    from yooptx.cli import main
    from yooptx.config import SplitsConfig
    from yooptx.core import UserError
    from yooptx.data import DataCatalog
    from yooptx.quality import check_bars
    from yooptx.splits import SplitError, walk_forward_from_config
    # bad --jobs and unknown encoder params are refused before any data are prepared
    def no_prep(*a, **k): raise AssertionError('data prepared before the config was checked')
    monkeypatch.setattr(B, 'prepare', no_prep)
    with pytest.raises(UserError, match='jobs=0: expected an integer >= 1'): bakeoff(load_config(TINY), jobs=0, run_dir=tmp_path / 'r')
    with pytest.raises(UserError, match="unknown param 'bogus'"): bakeoff(load_config(TINY, ['encoders.cnn.params.bogus=3']), run_dir=tmp_path / 'r')
    assert not (tmp_path / 'r').exists()
    # split errors give their advice in config keys that exist
    ts = random_walk(60, seed=0)['timestamp']
    with pytest.raises(SplitError) as e: walk_forward_from_config(ts, SplitsConfig(n_folds=20), horizon=5)
    assert 'splits.n_folds, now 20' in str(e.value) and 'train_size' not in str(e.value) and 'initial_train' not in str(e.value), e.value
    with pytest.raises(SplitError) as e: walk_forward_from_config(ts, SplitsConfig(n_folds=2, val_fraction=0.01), horizon=1)
    assert 'raise splits.val_fraction' in str(e.value) and 'train_size' not in str(e.value), e.value
    # a huge value is abridged in the error, not echoed whole
    with pytest.raises(ConfigError) as e: load_config({'seeds': 'x' * 100_000})
    assert len(str(e.value)) < 300
    # ingested parquet files read like the manifest (not mkstemp's 0600); daily bars written with changing UTC offsets keep their dates
    csv = tmp_path / 'eu.csv'
    csv.write_text('Date,Open,High,Low,Close,Volume\n' + ''.join(f'{d}T00:00:00{o},1,2,0.5,1.5,10\n' for d, o in
                   (('2021-03-25', '+01:00'), ('2021-03-26', '+01:00'), ('2021-03-29', '+02:00'), ('2021-03-30', '+02:00'))))
    cat = DataCatalog()
    cat.ingest(csv, 'eu', calendar='XNYS')
    files = list((home / 'catalog').glob('eu-*.parquet'))
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    assert len(files) == 1 and mode(files[0]) == mode(home / 'catalog' / 'MANIFEST.json'), [oct(mode(f)) for f in files]
    bars = cat.load('eu')
    assert [str(t.date()) for t in bars['timestamp']] == ['2021-03-25', '2021-03-26', '2021-03-29', '2021-03-30']
    # data check on bad bars: findings, no numpy RuntimeWarning
    bad = bars.with_columns(close=pl.Series([1.5, 0.0, -1.0, float('nan')]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        rep = check_bars(bad, '1D', 'XNYS')
    assert {f.check for f in rep.findings if f.severity == 'error'} >= {'nonpositive', 'nan_inf'}


def test_no_code_runs_from_a_report_parameter(noise_run, tmp_path):
    flag = tmp_path / 'pwned'
    evil = f"""x'"\\"); __import__('os').system('touch {flag}'); ("' #"""      # both quotes, a backslash, a comment
    rc, out, err = run_cli('run', 'attention', '--run', noise_run, '--no-render', '--quiet', '-p', 'encoder', 'cnn', '-p', 'symbol', evil)
    assert not flag.exists(), err
    assert rc == 1 and f"symbol {evil!r} is not in the data" in err, err      # it arrived as data, verbatim
