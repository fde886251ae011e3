"""Scale: scoring a whole split holds one batch of windows at a time (the largest batch any scoring path builds, and
the peak memory of a subprocess scoring 2,000 vs 20,000 windows), the batched split loss equals the one-batch loss for
every loss (rank: by whole timestamps), and trials build the calendar grid and the rows' layout once per data
preparation, not once per panel."""
import json, os, subprocess, sys, textwrap
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

import yooptx.datasets as D
import yooptx.reporting.explain as A
import yooptx.training.driver as wf
from yooptx.config import TrainConfig
from yooptx.experiment import prepare
from yooptx.normalize import Normalizer
from yooptx.synth import random_walk
from yooptx.training.checkpoints import Predictor, load, score_windows
from yooptx.training.module import SequenceModel, make_meta


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope='module')
def market():
    "Six symbols x 1,200 daily bars: fold 1 has 1,434 val and 2,400 test rows, each timestamp a group of six rows."
    cfg = {'splits': {'n_folds': 2, 'val_fraction': 0.3}, 'features': {'preset': 'minimal'}, 'labels': {'kind': 'direction'},
           'train': {'window': 16, 'batch_size': 64}, 'budget': {'max_epochs': 1}, 'seeds': [0],
           'encoders': {'transformer': {'params': {'d_model': 8, 'n_heads': 2, 'n_layers': 1, 'ffn_dim': 16}}}}
    return prepare(cfg, bars=random_walk(1200, n_symbols=6, seed=2), calendar='XNYS')


def untrained(data, encoder='transformer', kind='classification', fold=0, window=16, **train):
    "A Predictor of an untrained `encoder` for `fold` of `data` (normalizer fit on the fold's training rows), loss settings in `train`."
    f = next(x for x in data.folds if x.fold == fold)
    names = [c for c in data.features.columns if c not in ('timestamp', 'symbol')]
    cls = [0, 1] if kind == 'classification' else None
    params = {'transformer': {'d_model': 8, 'n_heads': 2, 'n_layers': 1, 'ffn_dim': 16}, 'cnn': {'d_model': 8, 'n_layers': 2}}[encoder]
    meta = make_meta(encoder, params, TrainConfig(window=window, **train), names, window, kind, cls, [40, 60] if cls else None,
                     Normalizer().fit(data.features, f.train), target_scale=0.01 if kind == 'regression' else 1.0,
                     seed=0, calendar=data.calendar, freq=data.freq, fold=fold, params_hash='scale', params=params)
    torch.manual_seed(0)
    return Predictor(SequenceModel(meta), 'scale')


# ---------------------------------------------------------------- the largest batch any scoring path builds

def test_scoring_never_builds_more_than_a_batch(market, monkeypatch):
    seen = []
    batch, forward = D.WindowDataset.batch, SequenceModel.forward
    monkeypatch.setattr(D.WindowDataset, 'batch', lambda self, keys: seen.append(('batch', len(keys))) or batch(self, keys))
    monkeypatch.setattr(SequenceModel, 'forward', lambda self, x, m=None: seen.append(('forward', x.shape[0])) or forward(self, x, m))
    def largest(): b = max(n for _, n in seen); seen.clear(); return b
    pr, f = untrained(market, fold=1), market.folds[1]
    assert len(f.val) > 1024 and len(f.test) > 2000
    panel = pr.panel(market)
    m = pr.model.attach(market.labels['fwd_return'].to_numpy(), wf._groups(market))
    ds = D.WindowDataset(panel, market.labels, f.val, pr.window, kind=m.kind, classes=m.classes)
    wf.split_loss(m, ds, batch_size=100); assert largest() == 100
    pr.predict(None, f.test, market.labels, panel=panel, batch_size=100); assert largest() == 100
    pr.predict_fold(market); assert largest() == 1024                           # val and test: 1,024 windows at a time
    wf._val_loss(pr, market, f); assert largest() == 1024
    # explaining: IG path points, masked faithfulness windows and attention maps, batch by batch
    w = A.windows(pr, market, 'SYN0', '2020-01-01', '2030-01-01', max_windows=200)
    assert len(w) == 200 and largest() == 200                                 # the windows asked for, cut once
    ig = A.integrated_gradients(pr, w, steps=8, batch_size=256); assert largest() <= 256
    A.faithfulness(pr, w, ig, k=5, n_random=10, batch_size=128); assert largest() <= 128   # 2,200 masked windows
    A.attention_maps(pr, w, batch_size=64)                                    # the encoder alone: not counted by forward
    seen.clear()


# ---------------------------------------------------------------- the batched split loss is the one-batch loss

LOSSES = [('classification', {'loss': 'cross_entropy'}), ('classification', {'loss': 'cross_entropy', 'class_weights': 'balanced', 'label_smoothing': 0.1}),
          ('classification', {'loss': 'focal', 'class_weights': 'balanced'}), ('classification', {'loss': 'sharpe'}),
          ('classification', {'loss': 'rank'}), ('regression', {'loss': 'huber'}), ('regression', {'loss': 'mse'}),
          ('regression', {'loss': 'quantile'}), ('regression', {'loss': 'sharpe'}), ('regression', {'loss': 'rank'})]


@pytest.mark.parametrize('kind,train', LOSSES, ids=[f"{k[:5]}-{'-'.join(str(v) for v in t.values())}" for k, t in LOSSES])
def test_split_loss_equals_one_batch_loss(market, kind, train):
    data = market if kind == 'classification' else SimpleNamespace(**{**market.__dict__, 'labels': market.labels.with_columns(label=pl.col('fwd_return'))})
    pr, f = untrained(data, 'cnn', kind, **train), data.folds[1]
    m = pr.model.attach(data.labels['fwd_return'].to_numpy(), wf._groups(data))
    ds = D.WindowDataset(pr.panel(data.features), data.labels, f.val[:1500], pr.window, kind=kind, classes=m.classes)
    b = ds.batch(np.arange(len(ds)))
    with torch.no_grad(): one = float(m._loss(b, m(b['past_values'], b['observed_mask'])))
    # 4: a timestamp (six rows) is larger than the batch; 100: many timestamps a chunk; 10**6: one batch
    for bs in (4, 100, 10**6):
        assert wf.split_loss(m, ds, batch_size=bs) == pytest.approx(one, rel=1e-5, abs=1e-7), (bs, one)


# ---------------------------------------------------------------- peak memory: bounded by the batch, not the split

PROBE = textwrap.dedent('''
    "Peak RSS above the level before scoring, while scoring n prebuilt windows (MiB), for each case in argv."
    import gc, json, os, sys, threading, time
    import numpy as np, polars as pl, torch
    torch.set_num_threads(1)
    from yooptx.config import TrainConfig
    from yooptx.datasets import BarPanel, WindowDataset
    from yooptx.training.checkpoints import score_windows
    from yooptx.training.driver import split_loss
    from yooptx.training.module import SequenceModel, make_meta
    S, L, F, N = 25, 32, 4, 20_000
    T = L + N // S
    rng = np.random.default_rng(0)
    ts = np.datetime64('2020-01-01', 'us') + np.arange(T).astype('timedelta64[D]')
    feats = pl.DataFrame({'timestamp': pl.Series(np.tile(ts, S)).dt.replace_time_zone('UTC'), 'symbol': np.repeat([f'S{i:02d}' for i in range(S)], T),
                          **{f'f{j}': rng.standard_normal(S * T) for j in range(F)}})
    labels = feats.select('timestamp', 'symbol', label=pl.Series(rng.integers(0, 2, S * T), dtype=pl.Int8))
    rows = np.flatnonzero(np.tile(np.arange(T) >= L, S))
    params = {'d_model': 16, 'n_heads': 2, 'n_layers': 1, 'ffn_dim': 32}
    meta = make_meta('transformer', params, TrainConfig(window=L), [f'f{j}' for j in range(F)], L, 'classification', [0, 1], [1, 1], seed=0, params={})
    model = SequenceModel(meta).eval()
    panel = BarPanel(feats, L)
    def one_batch(ds):      # the whole split in one batch (what the validation loss did before): the probe must see it grow
        with torch.inference_mode():
            b = ds.batch(np.arange(len(ds))); return float(model._loss(b, model(b['past_values'], b['observed_mask'])))
    CASES = {'split_loss': lambda ds: split_loss(model, ds), 'score_windows': lambda ds: score_windows(model, ds), 'one_batch': one_batch}
    def rss(): return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    out = {}
    for case in sys.argv[1:]:
        name, n = case.split(':'); n = int(n)
        ds = WindowDataset(panel, labels, rows[np.linspace(0, rows.size - 1, n).astype(np.int64)], L)
        CASES[name](WindowDataset(panel, labels, rows[:64], L)); gc.collect()     # warm-up: one-time allocations are not scoring's
        base = peak = rss(); stop = []
        def sample():
            global peak
            while not stop: peak = max(peak, rss()); time.sleep(0.0005)
        th = threading.Thread(target=sample, daemon=True); th.start()
        CASES[name](ds)
        stop.append(1); th.join(); peak = max(peak, rss())
        out[case] = (peak - base) / 2**20
        del ds; gc.collect()
    print(json.dumps(out))
''')


@pytest.mark.skipif(not os.path.exists('/proc/self/statm'), reason='reads RSS from /proc (Linux)')
def test_peak_memory_of_scoring_is_bounded_by_the_batch(tmp_path):
    script = tmp_path / 'probe.py'; script.write_text(PROBE)
    # a fixed glibc mmap threshold returns every freed tensor to the OS, so RSS shows what is live, not allocator slack
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='131072')
    cases = ['split_loss:2000', 'split_loss:20000', 'score_windows:2000', 'score_windows:20000', 'one_batch:2000', 'one_batch:20000']
    p = subprocess.run([sys.executable, str(script), *cases], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    mib = json.loads(p.stdout.strip().splitlines()[-1])
    print('peak MiB above the pre-scoring level:', {k: round(v, 1) for k, v in mib.items()})
    # power: one batch of the split grows with it (about 10x from 2k to 20k windows)...
    assert mib['one_batch:20000'] > 4 * mib['one_batch:2000'] > 0, mib
    # ...batch by batch it does not: 10x the windows, the same peak (up to a little per-window bookkeeping)
    for case in ('split_loss', 'score_windows'):
        small, big = mib[f'{case}:2000'], mib[f'{case}:20000']
        assert big < 1.5 * small + 8, (case, mib)
        assert big < 0.25 * mib['one_batch:20000'], (case, mib)


# ---------------------------------------------------------------- work done once per data preparation

def test_trials_share_the_grid_and_layout(market, tmp_path, monkeypatch):
    n = {'PanelLayout': 0, 'BarPanel': 0, 'bar_times': 0}
    def counted(name, fn):
        def w(*a, **k): n[name] += 1; return fn(*a, **k)
        return w
    monkeypatch.setattr(D.PanelLayout, '__init__', counted('PanelLayout', D.PanelLayout.__init__))
    monkeypatch.setattr(D.BarPanel, '__init__', counted('BarPanel', D.BarPanel.__init__))
    monkeypatch.setattr(D, 'bar_times', counted('bar_times', D.bar_times))
    mt = wf.make_trainer
    monkeypatch.setattr(wf, 'make_trainer', lambda *a, **k: mt(*a, limit_train_batches=2, limit_val_batches=2, **k))
    data = prepare(market.config, bars=market.bars, calendar='XNYS')            # a fresh preparation: nothing built yet
    params = {'d_model': 8, 'n_heads': 2, 'n_layers': 1, 'ffn_dim': 16}
    per_trial = []
    for fold, seed in ((0, 0), (0, 1), (1, 0)):
        row = wf.train_trial(data, 'transformer', params, fold, seed, tmp_path)
        assert row['status'] == 'ok', row.get('error')
        per_trial.append(dict(n)); n.update(PanelLayout=0, BarPanel=0, bar_times=0)
    # the first trial lays the rows out once (one calendar grid for all symbols); later trials and folds reuse it.
    # Each trial fills two panels: the training module's and the saved model's (its predictions and val loss).
    assert per_trial[0] == {'PanelLayout': 1, 'BarPanel': 2, 'bar_times': 1}, per_trial
    assert per_trial[1] == per_trial[2] == {'PanelLayout': 0, 'BarPanel': 2, 'bar_times': 0}, per_trial
    # sharing changes nothing: the stored predictions are the checkpoint's own, cut from a panel built from scratch
    stored = pl.read_parquet(tmp_path / row['predictions']).filter(pl.col('split') == 'test')
    fresh = load(tmp_path / row['checkpoint']).predict(data.features, data.folds[1].test, data.labels)
    assert np.array_equal(stored['prediction'].to_numpy(), fresh['prediction'].to_numpy())
