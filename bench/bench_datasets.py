"""Benchmark (hand-written): memory and speed of `yooptx.datasets.WindowDataset` at L=192 over >= 1M rows.

Memory: peak bytes while building the dataset from a features frame and iterating a few batches, divided by
the bytes of the raw (rows x features) float32 array (target <= 1.5x: windows are views, never copies).
Measured two ways: tracemalloc (numpy/python allocations) and process RSS sampled by a background thread
(everything, polars and torch included), each in >= 3 rounds with the two bar grids taking turns
(bench/_harness.py). Every memory round runs in a fresh process: in a process that already built a dataset the
allocator reuses freed pages and the RSS increase reads near zero. The closing line holds the worse grid's median of
each against 1.5. Speed: items/s of a
DataLoader pass (batch 256, num_workers 0), per-item + collate vs batched gather in interleaved rounds, plain and
with jitter+mixup augmentation. Prints numbers and ratios; asserts nothing. `--quick` (or BENCH_QUICK=1): 300k rows.
"""
import argparse, gc, json, os, subprocess, sys, threading, time, tracemalloc, warnings
import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader
from yooptx.datasets import Augment, WindowDataset, WindowSampler
from _harness import Target, header, interleave, quick, summarize, verdict

TARGET = 1.5

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


N_FEATURES, N_SYMBOLS, L, BATCH = 20, 4, 192, 256
GRIDS = {'consecutive rows': (None, None), '24/7 1m grid': ('24/7', '1m')}


def warm_up():
    "Build and read a small dataset on each grid once, so one-time library costs (thread pools, calendar tables) are not counted."
    sf, sl = make_frames(20_000, N_FEATURES, N_SYMBOLS, seed=1)
    for calendar, freq in GRIDS.values():
        w = WindowDataset(sf, sl, L=L, calendar=calendar, freq=freq)
        next(iter(DataLoader(w, sampler=WindowSampler(w, batch_size=BATCH), batch_size=None)))


def memory_round(n_rows: int, grid: str) -> dict:
    "In this (fresh) process: build the dataset on `grid` and iterate 20 batches; its bytes, peak traced and peak RSS increase over the raw array."
    feats, labels = make_frames(n_rows, N_FEATURES, N_SYMBOLS)
    raw = feats.height * N_FEATURES * 4
    warm_up(); gc.collect()
    calendar, freq = GRIDS[grid]
    tracemalloc.start()
    with PeakRSS() as m:
        t = time.perf_counter()
        ds = WindowDataset(feats, labels, rows=None, L=L, calendar=calendar, freq=freq, split='train')
        t_build = time.perf_counter() - t
        for k, b in enumerate(DataLoader(ds, sampler=WindowSampler(ds, batch_size=BATCH), batch_size=None)):
            if k == 20: break
    cur, peak = tracemalloc.get_traced_memory(); tracemalloc.stop()
    return dict(build=t_build, windows=len(ds), shape=tuple(ds.panel.values.shape), missing=ds.panel.n_missing,
                nbytes=ds.nbytes / raw, traced=peak / raw, rss=(m.peak - m.base) / raw)


def memory_in_child(n_rows: int, grid: str) -> dict:
    "`memory_round` in a fresh python process."
    p = subprocess.run([sys.executable, __file__, '--memory-round', grid, '--rows', str(n_rows)], capture_output=True, text=True)
    if p.returncode: raise RuntimeError(f"memory round on {grid!r} failed: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(n_rows=1_200_000, n_features=N_FEATURES, n_symbols=N_SYMBOLS, L=L, batch=BATCH):
    header('datasets: WindowDataset memory vs the raw array, DataLoader items/s')
    feats, labels = make_frames(n_rows, n_features, n_symbols)
    raw = feats.height * n_features * 4
    print(f"features: {feats.height:,} rows x {n_features} features, {n_symbols} symbols; raw float32 array {raw / 2**20:.1f} MiB; L={L}")
    warm_up()
    r = interleave({g: (lambda g=g: memory_in_child(n_rows, g)) for g in GRIDS}, warmup=False, keep_all=True)
    worst = {'traced': (0.0, ''), 'rss': (0.0, '')}
    for g, res in r.results.items():
        x = res[-1]
        print(f"[{g}] build median {sorted(y['build'] for y in res)[len(res) // 2]:.2f} s, {r.rounds} rounds each in a fresh process "
              f"({x['windows']:,} windows; panel {tuple(x['shape'])}, {x['missing']:,} missing bars)")
        print(f"  dataset bytes (array + mask + index + targets) / raw array bytes: {x['nbytes']:.3f}")
        for key, what in (('traced', 'peak traced memory (tracemalloc) / raw bytes'), ('rss', 'peak RSS increase / raw bytes          ')):
            med = summarize(f"  {what}", [y[key] for y in res], r.loads, fmt='{:.3f}')
            worst[key] = max(worst[key], (med, g))
    windows = r.results['consecutive rows'][-1]['windows']
    print(f"(a materialized copy of every window would be {windows * L * n_features * 4 / raw:.0f}x the raw array)")
    ds = WindowDataset(feats, labels, rows=None, L=L, split='train')
    it = ds[len(ds) // 2]
    assert it['past_values'].untyped_storage().data_ptr() == ds.panel.values.untyped_storage().data_ptr()

    def items(d, n_items, **kw) -> int:
        "Items a DataLoader pass yields before it has yielded `n_items` (whole batches)."
        seen = 0
        for b in DataLoader(d, **kw):
            seen += b['past_values'].shape[0]
            if seen >= n_items: break
        return seen

    tr = WindowDataset(ds.panel, labels, L=L, train=True, augment=Augment(jitter=0.05, mixup=0.2, block=64), seed=0)
    print(f"\nDataLoader pass, batch {batch}, 0 workers, items/s (shuffled order), {r.rounds} interleaved rounds:")
    for name, d, n_items in (('no augmentation', ds, 20_000), ('jitter + mixup + block bootstrap', tr, 512)):
        blk = d.augment.block
        s = interleave({'per-item + collate': lambda: items(d, n_items, batch_size=batch, sampler=WindowSampler(d, seed=0, block=blk)),
                        'batched gather': lambda: items(d, n_items, sampler=WindowSampler(d, seed=0, block=blk, batch_size=batch), batch_size=None)},
                       warmup=False)
        n = s.last['batched gather']
        print(f"  {name}: median per-item + collate {n / s.median('per-item + collate'):,.0f} items/s, batched gather {n / s.median('batched gather'):,.0f} items/s ({n:,} items a pass)")
        summarize(f"  speed-up batched gather / per-item, {name}", s.ratio('per-item + collate', 'batched gather'), s.loads, fmt='{:.1f}x')
    flat = ds.panel.values.shape[0] * n_features * 4
    t = time.perf_counter(); _ = ds.panel.values.clone(); t_copy = time.perf_counter() - t
    print(f"reference: one copy of the whole array takes {t_copy * 1e3:.0f} ms ({flat / 2**20:.0f} MiB)\n")
    verdict(Target(f"datasets peak traced memory / raw array, worse grid ({worst['traced'][1]})", worst['traced'][0], '<=', TARGET, fmt='{:.3f}'),
            Target(f"datasets peak RSS increase / raw array, worse grid ({worst['rss'][1]})", worst['rss'][0], '<=', TARGET, fmt='{:.3f}'))


if __name__ == '__main__':
    warnings.simplefilter('ignore')
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    ap = argparse.ArgumentParser()
    ap.add_argument('--rows', type=int, default=300_000 if quick() else 1_200_000)
    ap.add_argument('--memory-round', choices=list(GRIDS), help='internal: one memory round in this process, printed as JSON')
    ap.add_argument('--quick', action='store_true', help='300k rows')
    a = ap.parse_args()
    if a.memory_round: print(json.dumps(memory_round(a.rows, a.memory_round)))
    else: main(n_rows=a.rows)
