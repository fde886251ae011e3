"""Benchmark (hand-written): the seeds' scale on one machine — 1,700 symbols x 2,500 daily bars through yooptx's own
path: synthetic market, features, labels, purged folds, the window panel, one transformer trial (fold 0, one seed:
training, validation loss, predictions on validation and test), the backtest of its test predictions and the gate's
checks. Prints wall time, CPU time and peak RSS per stage (RSS sampled by a thread), the raw panel's float32 size and
the peak/raw ratio (of the whole process, and above what the imports alone hold), and ends with OK / MISS against the
targets (trial <= 30 min; the panel's working set — the peak RSS of the pipeline's stages above what the imports hold —
<= 3x the raw panel). Features are stored as float32 (`features.dtype: float32`, the setting for thousands of symbols).
The synthetic market is the input, not the pipeline: it is generated 100 symbols at a time (independent symbols, so the
same market as one call would be in distribution) and its own peak is printed apart.

Training is capped by `--minutes` (default 4) per trial through the experiment budget: the trial then reports the
windows it trained on, and the benchmark extrapolates the time of the asked `--epochs` (default 3) from the measured
rate and says so. `--symbols` / `--bars` shrink the panel (e.g. `--quick`: 400 x 1,000).

`--ranking`: the cross-sectional variant — a market with a planted signal (synth.planted_signal), the transformer
trained with the pairwise rank loss on batches of whole dates (train.batching: cross_section), its test predictions
traded as a dollar-neutral long-short quintile book (backtest.portfolio: long_short), then the ranking statistics
(per-date IC, ICIR, HAC t, top-k, quintile spread, the competition score) and the gate with its ICIR floor.
"""
import argparse, json, os, resource, sys, tempfile, threading, time, warnings
from pathlib import Path
# polars' jemalloc keeps freed pages for seconds (dirty/muzzy decay) and RSS would count them as if live: return them at
# once, so the peaks below are what the pipeline holds (set before polars loads; an explicit setting wins)
os.environ.setdefault('_RJEM_MALLOC_CONF', 'dirty_decay_ms:0,muzzy_decay_ms:0')
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _harness import header, load_line, quick


def rss() -> int:
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class Stage:
    "Wall, CPU (this process and its children) and peak RSS of a block; the peak sampled every 20 ms."
    rows: list = []
    def __init__(self, name): self.name = name
    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.base = self.peak = rss(); self._stop = False
        def loop():
            while not self._stop: self.peak = max(self.peak, rss()); time.sleep(0.02)
        self._t = threading.Thread(target=loop, daemon=True); self._t.start()
        print(f"-- {self.name} …", flush=True)
        return self
    def __exit__(self, *a):
        self._stop = True; self._t.join(); self.peak = max(self.peak, rss())
        self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
        Stage.rows.append(self)
        print(f"   {self.wall:8.1f} s wall {self.cpu:8.1f} s CPU   peak RSS {self.peak / 2**20:8.0f} MiB", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--symbols', type=int, default=400 if quick() else 1700)
    ap.add_argument('--bars', type=int, default=1000 if quick() else 2500)
    ap.add_argument('--window', type=int, default=90)
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--minutes', type=float, default=4.0, help='training time cap of the measured trial')
    ap.add_argument('--patch', type=int, default=8, help="the transformer's patch length and stride (tokens of `patch` bars; 1: a token per bar)")
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--ranking', action='store_true', help='the cross-sectional variant: rank loss on whole dates, long-short book, ranking statistics')
    a = ap.parse_args()
    header(f"bench_scale: {a.symbols:,} symbols x {a.bars:,} daily bars, window {a.window}, one transformer trial "
           f"(d_model 32, 2 layers, patches of {a.patch} bars: {-(-a.window // a.patch)} tokens a window)")
    import torch
    from yooptx import synth
    from yooptx.config import load_config
    from yooptx.experiment import ExperimentData
    from yooptx.features import build
    from yooptx.labels import make_labels_from_config
    from yooptx.splits import walk_forward
    from yooptx.datasets import BarPanel
    from yooptx.experiments.executors import default_threads
    from yooptx.training.driver import train_trial
    from yooptx.backtest import run_predictions, seed_average
    from yooptx.gate import gate_checks
    from yooptx.metrics import periods_per_year
    torch.set_num_threads(default_threads(1))
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    base = rss()                                            # the interpreter with torch, polars, lightning imported
    rank = {'loss': 'rank', 'batching': 'cross_section', 'batch_size': max(512, a.symbols)} if a.ranking else {'batch_size': 512}
    cfg = load_config({'data': {'name': 'given'}, 'features': {'preset': 'manual_v1', 'dtype': 'float32'}, 'labels': {'kind': 'direction', 'horizon': 1},
                       'splits': {'n_folds': 3, 'embargo': 1}, 'seeds': [0],
                       'encoders': {'transformer': {'params': {'d_model': 32, 'n_layers': 2, 'n_heads': 4, 'patch_length': a.patch, 'patch_stride': a.patch}}},
                       'train': {'window': a.window, 'patience': 5, **rank},
                       'backtest': {'portfolio': 'long_short' if a.ranking else 'per_symbol'},
                       'budget': {'max_epochs': a.epochs, 'max_minutes_per_trial': a.minutes}})
    with Stage('synthetic market (synth.planted_signal)' if a.ranking else 'synthetic market (synth.random_walk)'):
        gen = synth.planted_signal if a.ranking else synth.random_walk
        kw = {'sharpe': 1.0} if a.ranking else {}
        parts = []
        for i, k in enumerate(range(0, a.symbols, 100)):
            n = min(100, a.symbols - k)
            parts.append(gen(a.bars, n_symbols=n, seed=i, **kw).with_columns(
                ('SYN' + (pl.col('symbol').str.slice(3).cast(pl.Int64) + k).cast(pl.String)).alias('symbol')))
        bars = pl.concat(parts).sort('symbol', 'timestamp'); del parts
    gen_stage = Stage.rows.pop()
    with Stage('features (manual_v1, float32)'):
        feats = build(bars, preset='manual_v1', freq='1D', calendar='XNYS', dtype='float32')
    with Stage('labels'):
        labels = make_labels_from_config(bars, cfg.labels)
    with Stage('purged walk-forward folds'):
        folds = walk_forward(labels['timestamp'], n_folds=3, horizon=1, embargo=1, val_fraction=0.2, label_end=labels['label_end'])
    data = ExperimentData(cfg, bars, feats, labels, folds, 'XNYS', '1D', 'given')
    n_feat = len(data.feature_names)
    raw = bars.height * n_feat * 4
    with Stage('window panel (BarPanel, one build)'):
        panel = BarPanel(feats, a.window, 'XNYS', '1D')
    del panel
    run = Path(tempfile.mkdtemp(prefix='bench_scale_'))
    f0 = folds[0]
    with Stage(f'one trial: transformer fold 0 seed 0 ({len(f0.train):,} train / {len(f0.val):,} val / {len(f0.test):,} test rows)'):
        row = train_trial(data, 'transformer', cfg.encoders['transformer'].params, 0, 0, run)
    trial = Stage.rows[-1]
    if row['status'] != 'ok': print(f"   trial failed: {row.get('error')}")
    preds = pl.read_parquet(run / row['predictions']) if row.get('predictions') else None
    with Stage('backtest of the test predictions'):
        bt = run_predictions(bars, preds, cfg.costs, cfg.backtest, 'XNYS', '1D', split='test')
    rk = None
    if a.ranking:
        from yooptx.ranking import ranking_report
        with Stage('ranking statistics (per-date IC, ICIR, HAC t, top-k, quintiles, competition score)'):
            rk = ranking_report(preds.filter(pl.col('split') == 'test').select('timestamp', 'symbol', 'prediction', 'fwd_return'), 5)
        print(f"   mean IC {rk['mean_ic']:.4f}, ICIR {rk['icir']:.3f}, HAC t {rk['ic_t_hac']:.2f}, competition score {rk['competition_score']}", flush=True)
    with Stage("gate checks (candidate vs buy & hold, bootstrap, DSR, DM)"):
        r = seed_average(bt, 'transformer', row['params_hash'])
        hold = preds.filter(pl.col('split') == 'test').with_columns(prediction=pl.lit(1.0), encoder=pl.lit('buy_hold'))
        b = seed_average(run_predictions(bars, hold, cfg.costs, cfg.backtest, 'XNYS', '1D', split='test'), 'buy_hold', row['params_hash'])
        ppy = periods_per_year('XNYS', '1D')
        checks = gate_checks(r['net'].to_numpy(), r['gross'].to_numpy(), r['turnover'].to_numpy(), {'buy_hold': b['net'].to_numpy()},
                             [0.0], None, 1, cfg.gate, cfg.costs.per_unit_bps, ppy, icir=rk['icir'] if rk else None, ranking=rk is not None)
    # training time per epoch, from the trial's own numbers
    epochs = row.get('n_epochs') or 0
    print()
    print(f"{'stage':<70} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'peak / raw':>10}")
    for s in Stage.rows:
        print(f"{s.name[:70]:<70} {s.wall:8.1f} {s.cpu:8.1f} {s.peak / 2**20:13.0f} {s.peak / raw:10.2f}")
    peak = max(s.peak for s in Stage.rows)
    work = peak - base
    print(f"(input) synthetic market: {gen_stage.wall:.1f} s, peak RSS {gen_stage.peak / 2**20:.0f} MiB, the bars "
          f"{bars.estimated_size() / 2**20:.0f} MiB")
    print(f"raw panel (bars x {n_feat} features, float32): {raw / 2**20:.0f} MiB; pipeline peak RSS {peak / 2**20:.0f} MiB = "
          f"{peak / raw:.2f}x raw; working set {work / 2**20:.0f} MiB = {work / raw:.2f}x raw above the {base / 2**20:.0f} MiB "
          f"the imports hold; ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    capped = trial.wall >= a.minutes * 60 * 0.95
    if capped and epochs < a.epochs:
        per_epoch = a.minutes * 60 / max(epochs + 0.5, 0.5)
        est = trial.wall + per_epoch * (a.epochs - epochs)
        print(f"training hit the {a.minutes:g}-minute cap after {epochs} epoch(s): {a.epochs} epochs extrapolated to ~{est / 60:.1f} min "
              f"(measured rate; this is an estimate, not a run)")
    else:
        est = trial.wall
        print(f"the trial ran {epochs} epoch(s) in {trial.wall / 60:.1f} min")
    print(load_line('machine load at end:'))
    ok_time, ok_mem = est <= 30 * 60, work <= 3 * raw
    print(f"{'OK' if ok_time and ok_mem else 'MISS'}: full trial ({a.epochs} epochs) {est / 60:.1f} min (target <= 30) "
          f"{'OK' if ok_time else 'MISS'}; working set {work / raw:.2f}x the raw float32 panel (target <= 3) {'OK' if ok_mem else 'MISS'}")


if __name__ == '__main__':
    main()
