"""Benchmark (hand-written): memory and speed of `yooptx.datasets.WindowDataset` at L=192 over >= 1M rows.

Memory: peak bytes while building the dataset from a features frame and iterating a few batches, divided by
the bytes of the raw (rows x features) float32 array (target <= 1.5x: windows are views, never copies).
Measured two ways in the same run: tracemalloc (numpy/python allocations) and process RSS sampled by a
background thread (everything, polars and torch included). Speed: items/s of a DataLoader pass (batch 256,
num_workers 0), plain and with jitter+mixup augmentation. Prints numbers and ratios; asserts nothing.
"""
import gc, os, threading, time, tracemalloc, warnings
import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader
from yooptx.datasets import Augment, BarPanel, WindowDataset, WindowSampler

try:
    import psutil
    def rss() -> int: return psutil.Process(os.getpid()).memory_info().rss
except ImportError:  # Linux fallback: current RSS from /proc
    def rss() -> int: return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class PeakRSS:
    "Max RSS seen by a sampling thread while the block runs."
    def __enter__(self):
        self.base = self.peak = rss(); self._stop = False
        def loop():
            while not self._stop: self.peak = max(self.peak, rss()); time.sleep(0.002)
        self._t = threading.Thread(target=loop, daemon=True); self._t.start(); return self
    def __exit__(self, *a):
        self._stop = True; self._t.join(); self.peak = max(self.peak, rss())


def make_frames(n_rows: int, n_features: int, n_symbols: int, seed: int = 0):
    "A features frame (Float32 columns, consecutive 1-minute bars per symbol, a few gaps) and a labels frame."
    rng = np.random.default_rng(seed)
    per = n_rows // n_symbols
    t0 = np.datetime64('2020-01-01T00:00', 'us')
    ts = np.concatenate([t0 + np.sort(rng.choice(int(per * 1.01), per, replace=False)).astype('timedelta64[m]') for _ in range(n_symbols)])
    sym = np.repeat([f'SYN{i}' for i in range(n_symbols)], per)
    cols = {f'f{j:02d}': rng.standard_normal(per * n_symbols, dtype=np.float32) for j in range(n_features)}
    feats = pl.DataFrame({'timestamp': pl.Series(ts).dt.replace_time_zone('UTC'), 'symbol': sym, **cols})
    labels = feats.select('timestamp', 'symbol', label=pl.Series(rng.integers(0, 2, feats.height), dtype=pl.Int8))
    return feats, labels


def main(n_rows=1_200_000, n_features=20, n_symbols=4, L=192, batch=256):
    feats, labels = make_frames(n_rows, n_features, n_symbols)
    raw = feats.height * n_features * 4
    print(f"features: {feats.height:,} rows x {n_features} features, {n_symbols} symbols; raw float32 array {raw / 2**20:.1f} MiB; L={L}")
    # warm up once on a small frame so one-time library costs (thread pools, calendar tables) are not counted
    sf, sl = make_frames(20_000, n_features, n_symbols, seed=1)
    for calendar, freq in ((None, None), ('24/7', '1m')):
        w = WindowDataset(sf, sl, L=L, calendar=calendar, freq=freq)
        next(iter(DataLoader(w, sampler=WindowSampler(w, batch_size=batch), batch_size=None)))
    del sf, sl, w
    for calendar, freq in ((None, None), ('24/7', '1m')):
        ds = None; gc.collect()
        tracemalloc.start()
        with PeakRSS() as m:
            t = time.perf_counter()
            ds = WindowDataset(feats, labels, rows=None, L=L, calendar=calendar, freq=freq, split='train')
            t_build = time.perf_counter() - t
            for k, b in enumerate(DataLoader(ds, sampler=WindowSampler(ds, batch_size=batch), batch_size=None)):
                if k == 20: break
        cur, peak = tracemalloc.get_traced_memory(); tracemalloc.stop()
        grid = 'consecutive rows' if calendar is None else f"{calendar} {freq} grid"
        print(f"[{grid}] build {t_build:.2f} s ({len(ds):,} windows; panel {tuple(ds.panel.values.shape)}, {ds.panel.n_missing:,} missing bars)")
        print(f"  dataset bytes (array + mask + index + targets) / raw array bytes: {ds.nbytes / raw:.3f}")
        print(f"  peak traced memory (tracemalloc) / raw array bytes:              {peak / raw:.3f}")
        print(f"  peak RSS increase / raw array bytes:                              {(m.peak - m.base) / raw:.3f}")
    print(f"(a materialized copy of every window would be {len(ds) * L * n_features * 4 / raw:.0f}x the raw array)")
    it = ds[len(ds) // 2]
    assert it['past_values'].untyped_storage().data_ptr() == ds.panel.values.untyped_storage().data_ptr()

    def items_per_s(d, n_items=60_000, **kw):
        dl = DataLoader(d, **kw)
        t, seen = time.perf_counter(), 0
        for b in dl:
            seen += b['past_values'].shape[0]
            if seen >= n_items: break
        return seen / (time.perf_counter() - t)

    tr = WindowDataset(ds.panel, labels, L=L, train=True, augment=Augment(jitter=0.05, mixup=0.2, block=64), seed=0)
    print(f"DataLoader pass, batch {batch}, 0 workers, items/s (shuffled order):")
    print(f"{'':36s}{'per-item + collate':>20s}{'batched gather':>16s}  ratio")
    for name, d in (('no augmentation', ds), ('jitter + mixup + block bootstrap', tr)):
        a = items_per_s(d, n_items=60_000 if d is ds else 10_000, batch_size=batch, sampler=WindowSampler(d, seed=0, block=d.augment.block))
        b = items_per_s(d, sampler=WindowSampler(d, seed=0, block=d.augment.block, batch_size=batch), batch_size=None)
        print(f"  {name:34s}{a:20,.0f}{b:16,.0f}  {b / a:5.1f}x")
    flat = ds.panel.values.shape[0] * n_features * 4
    t = time.perf_counter(); _ = ds.panel.values.clone(); t_copy = time.perf_counter() - t
    print(f"reference: one copy of the whole array takes {t_copy * 1e3:.0f} ms ({flat / 2**20:.0f} MiB)")


if __name__ == '__main__':
    warnings.simplefilter('ignore')
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    main()
