"""WindowDataset / BarsDataModule: windows equal the raw rows, never cross symbols, masks mark exactly padding and
missing bars, rows/meta stitch back, one shared array (no copies), training-only deterministic augmentation,
DataModule batch shapes, and errors that name their numbers."""
from types import SimpleNamespace
import numpy as np
import polars as pl
import pytest
import torch
from yooptx.bars import DataError
from yooptx.calendars import bar_times
from yooptx.datasets import Augment, BarPanel, BarsDataModule, DatasetError, WindowDataset, WindowSampler
from yooptx.normalize import Normalizer
from yooptx.synth import random_walk


def stand_in_features(bars):
    "A few causal rolling features (warm-up nulls), like yooptx.features.build would give."
    r = (pl.col('close') / pl.col('close').shift(1)).log().over('symbol')
    return bars.select('timestamp', 'symbol', r.alias('ret1'), r.rolling_sum(5).over('symbol').alias('mom5'),
                       r.rolling_std(10).over('symbol').alias('vol10'), pl.col('volume').log().alias('logvol'))


def stand_in_labels(bars, h=1):
    "Direction labels (Int8 -1/+1; null past the data), like yooptx.labels.make_labels."
    fwd = (pl.col('close').shift(-h) / pl.col('close')).log().over('symbol')
    return bars.select('timestamp', 'symbol', pl.when(fwd > 0).then(1).when(fwd <= 0).then(-1).cast(pl.Int8).alias('label'),
                       fwd.alias('fwd_return'))


def fold_by_time(ts, cuts=(0.5, 0.6, 0.7, 0.8, 0.9)):
    t = ts.sort()
    q = [t[int(c * len(t))] for c in cuts]
    return SimpleNamespace(fold=3, train=np.flatnonzero(ts < q[0]), val=np.flatnonzero((ts >= q[1]) & (ts < q[2])),
                           test=np.flatnonzero(ts >= q[3]))


@pytest.fixture(scope='module')
def panel_data():
    bars = random_walk(300, n_symbols=3, seed=5)
    # a frame in shuffled row order, with some bars missing in the middle of each symbol
    rng = np.random.default_rng(0)
    drop = bars.with_row_index('i').filter(pl.col('i').is_in(rng.choice(bars.height, 25, replace=False).tolist())
                                           & (pl.int_range(pl.len()).over('symbol') > 20))['i']
    bars = bars.with_row_index('i').filter(~pl.col('i').is_in(drop.to_list())).drop('i')
    feats, labels = stand_in_features(bars), stand_in_labels(bars)
    perm = rng.permutation(feats.height)
    return bars[perm], feats[perm], labels[perm]


def test_window_equals_raw_rows_hand_check():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    ts = bar_times('XNYS', '1D', '2021-01-04', n=20)
    feats = pl.DataFrame({'timestamp': ts, 'symbol': 'A', 'a': x[:, 0], 'b': x[:, 1]})
    labels = feats.select('timestamp', 'symbol', label=pl.Series(np.arange(20) * 0.5, dtype=pl.Float64))
    ds = WindowDataset(feats, labels, L=5)
    for r in (0, 3, 4, 10, 19):
        it = ds[r]
        assert it['row'] == r and it['past_values'].shape == (5, 2) and it['past_values'].dtype == torch.float32
        lo = max(0, r - 4)
        exp = np.zeros((5, 2), np.float32); exp[5 - (r - lo + 1):] = x[lo:r + 1]
        assert np.array_equal(it['past_values'].numpy(), exp)
        assert it['observed_mask'].tolist() == [i >= 4 - r for i in range(5)]
        assert it['target'].dtype == torch.float32 and it['target'].item() == r * 0.5


def test_no_window_crosses_symbols(panel_data):
    bars, _, labels = panel_data
    # feature = symbol number + 1 (never 0), so any foreign or padding row would show
    sid = bars.select('timestamp', 'symbol', sid=pl.col('symbol').str.slice(3).cast(pl.Float64) + 1, t=pl.int_range(pl.len()).cast(pl.Float64))
    ds = WindowDataset(sid, labels, L=40, calendar='XNYS', freq='1D')
    meta = ds.meta
    for i in range(0, len(ds), 7):
        it = ds[i]
        v, m = it['past_values'].numpy(), it['observed_mask'].numpy()
        own = int(meta['symbol'][i][3:]) + 1
        assert (v[m, 0] == own).all() and (v[~m] == 0).all()


def test_masks_exactly_padding_and_missing_bars(panel_data):
    bars, _, labels = panel_data
    f = bars.select('timestamp', 'symbol', one=pl.lit(1.0))          # no warm-up nulls: mask = grid presence only
    L = 30
    ds = WindowDataset(f, labels, L=L, calendar='XNYS', freq='1D')
    have = {(s, t) for s, t in bars.select('symbol', 'timestamp').iter_rows()}
    firsts = dict(bars.group_by('symbol').agg(pl.col('timestamp').min()).iter_rows())
    grid = bar_times('XNYS', '1D', '2019-06-01', '2021-12-31')
    for i in range(0, len(ds), 11):
        s, t = ds.meta['symbol'][i], ds.meta['timestamp'][i]
        g = grid.filter((grid <= t)).tail(L).to_list()
        exp = [(s, x) in have and x >= firsts[s] for x in g]
        assert ds[i]['observed_mask'].tolist() == exp
    assert ds.panel.n_missing == 900 - bars.height > 0      # the dropped bars (none was a symbol's first or last)
    # no calendar: consecutive rows are consecutive bars, nothing is missing
    assert WindowDataset(f, labels, L=L).panel.n_missing == 0


def test_warmup_and_normalizer_mask(panel_data):
    _, feats, labels = panel_data
    ds = WindowDataset(feats, labels, L=12)
    first = ds.meta.with_row_index('i').filter(pl.col('timestamp') == pl.col('timestamp').min().over('symbol'))
    # a symbol's first bar: vol10 and mom5 are still warming up -> unobserved
    assert not ds[int(first['i'][0])]['observed_mask'].any()
    nz = Normalizer().fit(feats, np.arange(feats.height))
    ds2 = WindowDataset(nz.transform(feats), labels, L=12)
    assert torch.equal(ds2.panel.observed, ds.panel.observed)
    assert ds2.n_features == 4 and ds2.feature_names == ['ret1', 'mom5', 'vol10', 'logvol']


def test_row_and_meta_stitch_back(panel_data):
    _, feats, labels = panel_data
    fold = fold_by_time(feats['timestamp'])
    ds = WindowDataset(feats, labels, fold.test, L=20, calendar='XNYS', freq='1D', fold=fold.fold, split='test')
    assert ds.n_null_labels == 3                                     # each symbol's last bar has no label
    meta = ds.meta
    assert meta.columns == ['row', 'symbol', 'timestamp', 'fold', 'split', 'n_observed']
    assert (meta['fold'] == 3).all() and (meta['split'] == 'test').all()
    back = feats.with_row_index('row').join(meta.select('row', 'symbol', 'timestamp'), on='row', how='inner', suffix='_m')
    assert back.height == len(ds) and (back['symbol'] == back['symbol_m']).all() and (back['timestamp'] == back['timestamp_m']).all()
    names = ['ret1', 'mom5', 'vol10', 'logvol']
    for i in (0, len(ds) // 2, len(ds) - 1):
        it = ds[i]
        assert it['row'] == meta['row'][i]
        assert np.allclose(it['past_values'][-1].numpy(), feats[it['row']].select(names).to_numpy()[0].astype(np.float32))
        assert it['observed_mask'].sum().item() == meta['n_observed'][i]
    # stitching predictions back onto the frame by row
    preds = meta.select('row', pred=pl.Series(np.arange(len(ds), dtype=np.float64)))
    st = labels.with_row_index('row').join(preds, on='row', how='left')
    assert st['pred'].drop_nulls().len() == len(ds)


def test_one_shared_array():
    ts = bar_times('24/7', '1h', '2021-01-01', n=5000)
    rng = np.random.default_rng(1)
    feats = pl.DataFrame({'timestamp': ts, 'symbol': 'BTC', **{f'f{j}': rng.standard_normal(5000).astype(np.float32) for j in range(16)}})
    labels = feats.select('timestamp', 'symbol', label=pl.Series(rng.integers(0, 3, 5000), dtype=pl.Int64))
    ds = WindowDataset(feats, labels, L=192)
    base = ds.panel.values.untyped_storage().data_ptr()
    for i in (0, 100, 4999):
        assert ds[i]['past_values'].untyped_storage().data_ptr() == base
    raw = 5000 * 16 * 4
    assert ds.nbytes < 1.5 * raw                       # not 192 x raw
    assert ds.panel.values.is_contiguous() and ds.panel.values.shape == (5000 + 191, 16)
    assert ds.classes == [0, 1, 2] and ds[0]['target'].dtype == torch.int64


def test_augmentation_train_only_and_deterministic(panel_data):
    _, feats, labels = panel_data
    fold = fold_by_time(feats['timestamp'])
    aug = Augment(jitter=0.2, block=8, mixup=0.3)

    def first_batch(seed):
        dm = BarsDataModule(feats, labels, [fold], L=24, batch_size=16, augment=aug, seed=seed, calendar='XNYS', freq='1D')
        return dm, next(iter(dm.train_dataloader()))

    dm, b1 = first_batch(7)
    _, b2 = first_batch(7)
    _, b3 = first_batch(8)
    for k in ('past_values', 'observed_mask', 'target', 'row', 'mix_row', 'mix_lambda'):
        assert torch.equal(b1[k], b2[k]), k
    assert not torch.equal(b1['past_values'], b3['past_values'])
    # classification + mixup: soft targets over the classes (-1, 1)
    assert dm.train_ds.classes == [-1, 1] and b1['target'].shape == (16, 2)
    assert torch.allclose(b1['target'].sum(1), torch.ones(16))
    # padding / missing bars stay zero after jitter and mixup
    assert (b1['past_values'][~b1['observed_mask']] == 0).all()
    # a new epoch gives new draws, the same epoch the same ones
    tl = dm.train_dataloader()
    e0, e1 = next(iter(tl)), next(iter(tl))
    assert torch.equal(e0['past_values'], b1['past_values']) and not torch.equal(e1['row'], e0['row'])
    # val/test are never augmented: items are the raw views, targets class indices
    vb = next(iter(dm.val_dataloader()))
    assert 'mix_row' not in vb and vb['target'].dtype == torch.int64
    raw = WindowDataset(dm.panel, labels, fold.val, L=24, classes=[-1, 1])
    assert torch.equal(vb['past_values'][0], raw[0]['past_values'])
    assert not dm.val_ds.augmenting and not dm.test_ds.augmenting and dm.train_ds.augmenting


def test_jitter_only_on_observed_rows(panel_data):
    _, feats, labels = panel_data
    plain = WindowDataset(feats, labels, L=30)
    jit = WindowDataset(plain.panel, labels, L=30, train=True, augment=Augment(jitter=0.5), seed=3)
    for i in (0, 50, 400):
        a, b = plain[i], jit[(i, 0)]
        d = (b['past_values'] - a['past_values']).abs().sum(1)
        assert torch.equal(d > 0, a['observed_mask'])
        assert torch.equal(jit[(i, 0)]['past_values'], b['past_values'])
        assert not torch.equal(jit[(i, 1)]['past_values'], b['past_values'])
    # the base array was never written to
    assert torch.equal(plain.panel.values, jit.panel.values)


def test_block_bootstrap_sampler():
    s = WindowSampler(list(range(1000)), shuffle=False, seed=2, block=50)
    idx = s.indices(0)
    assert idx.size == 1000 and (np.diff(idx.reshape(20, 50), axis=1) == 1).all()
    assert not np.array_equal(idx, s.indices(1)) and np.array_equal(idx, WindowSampler(list(range(1000)), shuffle=False, seed=2, block=50).indices(0))
    sh = WindowSampler(list(range(1000)), shuffle=True, seed=2)
    assert sorted(sh.indices(0).tolist()) == list(range(1000)) and not np.array_equal(sh.indices(0), np.arange(1000))
    it = list(iter(sh))
    assert it[0][1] == 0 and list(iter(sh))[0][1] == 1         # each iteration is a new epoch


def test_datamodule_shapes_and_order(panel_data):
    _, feats, labels = panel_data
    nz = Normalizer().fit(feats, fold_by_time(feats['timestamp']).train)
    folds = [SimpleNamespace(fold=0, train=np.arange(0, 200), val=np.arange(200, 300), test=np.arange(300, 400)),
             fold_by_time(feats['timestamp'])]
    dm = BarsDataModule(nz.transform(feats), labels, folds, fold=1, L=32, batch_size=10, target='fwd_return', calendar='XNYS', freq='1D')
    dm.setup('fit')
    assert dm.n_features == 4
    tb = next(iter(dm.train_dataloader()))
    assert tb['past_values'].shape == (10, 32, 4) and tb['observed_mask'].shape == (10, 32) and tb['target'].dtype == torch.float32
    rows = torch.cat([b['row'] for b in dm.val_dataloader()])
    assert rows.tolist() == dm.val_ds.rows.tolist()                   # val keeps the fold's order
    tr_rows = torch.cat([b['row'] for b in dm.train_dataloader()])
    assert sorted(tr_rows.tolist()) == sorted(dm.train_ds.rows.tolist()) and tr_rows.tolist() != dm.train_ds.rows.tolist()
    m = dm.meta()
    assert set(m['split'].unique()) == {'train', 'val', 'test'} and (m['fold'] == 3).all()
    # one array shared by the three splits
    assert dm.train_ds.panel is dm.val_ds.panel is dm.test_ds.panel


def test_lightning_fit_smoke(panel_data):
    import lightning.pytorch as lp
    _, feats, labels = panel_data

    class Tiny(lp.LightningModule):
        def __init__(self):
            super().__init__(); self.lin = torch.nn.Linear(4, 1)
        def training_step(self, b, _):
            return ((self.lin(b['past_values'][:, -1]).squeeze(-1) - b['target']) ** 2).mean()
        def validation_step(self, b, _):
            self.log('val_loss', ((self.lin(b['past_values'][:, -1]).squeeze(-1) - b['target']) ** 2).mean())
        def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = BarsDataModule(Normalizer().fit_transform(feats), labels, [fold_by_time(feats['timestamp'])], L=8, batch_size=32,
                        target='fwd_return', augment=Augment(jitter=0.1))
    seen = []
    orig = WindowSampler.set_epoch
    WindowSampler.set_epoch = lambda self, e: (seen.append(e), orig(self, e))[1]
    try:
        lp.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   accelerator='cpu', limit_train_batches=3, limit_val_batches=2).fit(Tiny(), datamodule=dm)
    finally: WindowSampler.set_epoch = orig
    assert 0 in seen and 1 in seen                                        # Lightning drives the epochs of the sampler


def test_errors_name_numbers(panel_data):
    _, feats, labels = panel_data
    with pytest.raises(DatasetError, match='L=0'):
        WindowDataset(feats, labels, L=0)
    early = np.flatnonzero(feats['timestamp'] <= feats['timestamp'].sort()[30])     # the first ~10 bars of each symbol
    with pytest.raises(DatasetError, match=r'L=50 is longer than the available history of the \d+ given rows: at most 1[01] bars'):
        WindowDataset(feats, labels, early, L=50)
    with pytest.raises(DatasetError, match=f'features have {feats.height} rows but labels {feats.height - 1}'):
        WindowDataset(feats, labels.head(feats.height - 1), L=5)
    with pytest.raises(DatasetError, match='features and labels differ at row'):
        WindowDataset(feats, labels.sort('symbol', 'timestamp'), L=5)
    with pytest.raises(DataError, match='duplicated'):
        WindowDataset(pl.concat([feats, feats.head(1)]), None, L=5)
    with pytest.raises(DatasetError, match='no label column'):
        WindowDataset(feats, labels, L=5, target='label_h5')
    with pytest.raises(DatasetError, match='fold=2: there are 1 folds'):
        BarsDataModule(feats, labels, [fold_by_time(feats['timestamp'])], fold=2)
    with pytest.raises(DatasetError, match='Augment.jitter'):
        Augment(jitter=-1)
    with pytest.raises(DatasetError, match=r'row indices must lie in \[0, '):
        WindowDataset(feats, labels, [feats.height], L=5)


def test_batch_path_equals_item_path(panel_data):
    from torch.utils.data import DataLoader
    _, feats, labels = panel_data
    for aug in (Augment(), Augment(jitter=0.3, mixup=0.5)):
        ds = WindowDataset(feats, labels, L=16, train=True, augment=aug, seed=4, calendar='XNYS', freq='1D')
        keys = [(i, 2) for i in (0, 9, 300, len(ds) - 1)]
        b = ds.batch(keys)
        for k, key in enumerate(keys):
            it = ds[key]
            for name, v in it.items():
                assert torch.equal(torch.as_tensor(v), b[name][k]), (aug, name)
        # a plain DataLoader (per-item fetch + default collate) and the batched sampler give the same batches
        per_item = DataLoader(ds, batch_size=32, sampler=WindowSampler(ds, seed=1))
        batched = DataLoader(ds, sampler=WindowSampler(ds, seed=1, batch_size=32), batch_size=None)
        for x, y in zip(per_item, batched):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_workers_give_the_same_batches(panel_data):
    _, feats, labels = panel_data
    fold = fold_by_time(feats['timestamp'])
    kw = dict(L=16, batch_size=64, augment=Augment(jitter=0.1, mixup=0.2, block=5), seed=11)
    b0 = list(BarsDataModule(feats, labels, [fold], num_workers=0, **kw).train_dataloader())
    b2 = list(BarsDataModule(feats, labels, [fold], num_workers=2, **kw).train_dataloader())
    assert len(b0) == len(b2) and all(torch.equal(x['past_values'], y['past_values']) and torch.equal(x['target'], y['target']) for x, y in zip(b0, b2))


def test_datamodule_fits_normalizer_on_train_rows_only(panel_data):
    _, feats, labels = panel_data
    fold = fold_by_time(feats['timestamp'])
    dm = BarsDataModule(feats, labels, [fold], L=8, batch_size=16, normalizer=Normalizer('zscore', clip=None))
    dm.setup()
    ref = Normalizer('zscore', clip=None).fit(feats, fold.train)
    assert dm.normalizer.to_dict() == ref.to_dict() and dm.normalizer.n_fit_rows == fold.train.size
    x = WindowDataset(ref.transform(feats), labels, fold.val, L=8, classes=dm.train_ds.classes)
    assert torch.equal(dm.val_ds[0]['past_values'], x[0]['past_values'])


# ---------------------------------------------------------------- one grid for every symbol (PanelLayout)

def reference_positions(feats, L, calendar, freq):
    "The per-symbol algorithm BarPanel used before PanelLayout: each symbol's own bar_times grid, unioned with its rows."
    from datetime import timedelta
    ts, sym = feats['timestamp'].dt.epoch('us').to_numpy(), feats['symbol'].to_numpy()
    pos, at, glen = np.empty(len(ts), np.int64), 0, []
    for s in sorted(set(sym)):
        idx = np.flatnonzero(sym == s)
        t = ts[idx]
        lo, hi = (np.datetime64(int(v), 'us').astype('datetime64[D]').astype(object) for v in (t.min(), t.max()))
        g = bar_times(calendar, freq, lo, hi + timedelta(days=1)).dt.epoch('us').to_numpy()
        g = np.union1d(g[(g >= t.min()) & (g <= t.max())], t)
        at += L - 1
        pos[idx] = at + np.searchsorted(g, t)
        at += g.size; glen.append(g.size)
    return pos, at, np.array(glen)


def ragged_market(calendar, freq, start, end, seed):
    "Four symbols on one calendar with different spans (late listing, early delisting), dropped bars, off-grid rows, shuffled."
    rng = np.random.default_rng(seed)
    grid = bar_times(calendar, freq, start, end)
    n, out = grid.len(), []
    for k, (a, b) in enumerate([(0, n), (n // 3, n), (0, 2 * n // 3), (n // 4, 3 * n // 4)]):
        t = grid[a:b].dt.epoch('us').to_numpy()
        keep = np.ones(t.size, bool); keep[1:-1] = rng.random(t.size - 2) > 0.15            # first/last bar kept
        t = t[keep]
        shift = rng.random(t.size) < 0.05                                                     # a few rows off the grid
        t = np.unique(np.where(shift, t + 7 * 60_000_000, t))
        out.append(pl.DataFrame({'timestamp': pl.Series(t).cast(pl.Datetime('us')).dt.replace_time_zone('UTC'),
                                 'symbol': f'S{k}', 'x': rng.standard_normal(t.size)}))
    f = pl.concat(out)
    return f[rng.permutation(f.height)]


@pytest.mark.parametrize('calendar,freq,start,end', [('XNYS', '1D', '2020-01-02', '2021-06-30'), ('XNYS', '1h', '2021-03-01', '2021-04-30'),
                                                     ('XHKG', '1h', '2021-09-01', '2021-10-29'), ('CMES', '1h', '2021-03-01', '2021-03-31'),
                                                     ('FX', '1h', '2021-01-04', '2021-02-12'), ('24/7', '15m', '2021-01-01', '2021-01-20')])
def test_one_grid_for_all_symbols_equals_per_symbol_grids(calendar, freq, start, end):
    from yooptx.datasets import PanelLayout
    feats = ragged_market(calendar, freq, start, end, seed=len(calendar))
    pos, N, glen = reference_positions(feats, 6, calendar, freq)
    p = BarPanel(feats, 6, calendar, freq)
    assert np.array_equal(p.pos_of_row, pos) and p.values.shape[0] == N and np.array_equal(p.grid_len, glen)
    assert np.array_equal(p.values[p.pos_of_row, 0].numpy(), feats['x'].to_numpy().astype(np.float32))
    assert p.observed.sum().item() == feats.height and p.n_missing == int(glen.sum()) - feats.height > 0
    # a shared layout: the same panel for any values and any L
    lay = PanelLayout(feats, calendar, freq)
    q = BarPanel(feats.with_columns(pl.col('x') * 3), 9, layout=lay)
    pos9, N9, _ = reference_positions(feats, 9, calendar, freq)
    assert np.array_equal(q.pos_of_row, pos9) and q.values.shape[0] == N9
    assert np.array_equal(q.values[q.pos_of_row, 0].numpy(), (feats['x'] * 3).to_numpy().astype(np.float32))


def test_layout_refuses_other_rows(panel_data):
    from yooptx.datasets import PanelLayout
    _, feats, labels = panel_data
    lay = PanelLayout(feats, 'XNYS', '1D')
    assert lay.fits(feats) and lay.fits(Normalizer().fit(feats, np.arange(100)).transform(feats))   # normalizing keeps the rows
    for other in (feats.sort('timestamp'), feats.head(feats.height - 1), feats.with_columns(pl.col('timestamp') + pl.duration(days=1))):
        assert not lay.fits(other)
        with pytest.raises(DatasetError, match='other rows'): BarPanel(other, 8, layout=lay)
    with pytest.raises(DatasetError, match='differ from the layout'): BarPanel(feats, 8, 'XNYS', '1h', layout=lay)
    with pytest.raises(DataError, match='duplicated'): PanelLayout(pl.concat([feats, feats.head(1)]), 'XNYS', '1D')
