"""Benchmark (hand-written): the same small search run serially, with a local process pool (`--jobs 2`) and on an
embedded local Ray (`--executor ray`), on the bundled demo data (S&P 500 daily closes + VIX). Prints wall time,
trials/hour, the scaling efficiency of each parallel mode against serial (speed-up / workers), Ray's overhead against
the process pool (target: <= 10%), the time embedded Ray takes to start and to return its first trial, and checks
that every mode produced the same ledger trials and the same candidate net Sharpe.

`--optuna N`: also an Optuna sweep of N points (TPE, median pruner) of the LSTM on the demo data through the process
pool: wall time, pruned share, the DSR's N and the effective N, and the resulting deflated Sharpe.

The search: a 2-layer LSTM (d_model 32, 64-bar windows, `--epochs` epochs, no early stop) with a seeded random search of
`--points` learning rates x 3 folds x `--seeds` seeds, plus two baselines; one torch thread per trial in every mode, so
the modes differ only in how trials are spread.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import header, load_line, quick


def config(points: int, seeds: int, epochs: int = 5, extra: dict | None = None):
    from yooptx.config import load_config
    return load_config('demo', [
        'encoders={"lstm": {"params": {"d_model": 32, "n_layers": 2}, "search": {"method": "random", "n_trials": %d, '
        '"space": {"lr": {"low": 0.0003, "high": 0.003, "log": true}}}}}' % points, 'train.window=64', 'train.patience=10',
        'ensembles={}', 'baselines=["buy_hold", "momentum"]', f'seeds={list(range(seeds))}', f'budget.max_epochs={epochs}',
        f'budget.max_trials_per_encoder={max(points, 30)}', 'track.enabled=false', *(extra or [])])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--points', type=int, default=2 if quick() else 4)
    ap.add_argument('--seeds', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=2 if quick() else 5, help='epochs per trial (every trial runs them all: patience 10)')
    ap.add_argument('--optuna', type=int, default=0, help='also run an Optuna sweep of this many points (e.g. 30)')
    ap.add_argument('--quick', action='store_true')
    a = ap.parse_args()
    header(f"bench_scaleout: 2-layer LSTM random search of {a.points} points x 3 folds x {a.seeds} seeds + 2 baselines on the demo data; "
           f"serial vs --jobs 2 vs --executor ray")
    os.environ['YOOPTX_NO_TRACK'] = '1'
    import polars as pl
    from yooptx.experiment import prepare
    from yooptx.experiments.bakeoff import bakeoff
    from yooptx.gate import evaluate
    cfg = config(a.points, a.seeds, a.epochs)
    data = prepare(cfg)
    root = Path(tempfile.mkdtemp(prefix='bench_scaleout_'))
    res = {}
    for name, kw in (('serial', dict(jobs=1)), ('process pool, 2 jobs', dict(jobs=2)), ('ray, local, 2 CPUs', dict(executor='ray'))):
        t_ray = None
        if kw.get('executor') == 'ray':
            import ray
            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, logging_level='WARNING')
            t_ray = time.perf_counter() - t0
            from yooptx.experiments.executors import RayExecutor
            t0 = time.perf_counter()
            first = next(iter(RayExecutor().map(_noop, [{'trial_id': 'x'}], 0, str(root))))
            t_first = time.perf_counter() - t0
            print(f"   embedded Ray: ray.init {t_ray:.1f} s; the first (empty) task back {t_first:.2f} s later "
                  f"(time to first trial ~{t_ray + t_first:.1f} s + the trial itself)", flush=True)
        print(f"-- {name} …", flush=True)
        t0 = time.perf_counter()
        run = bakeoff(cfg, data=data, run_dir=root / name.split(',')[0].replace(' ', '_'), threads=1, progress=False, **kw)
        wall = time.perf_counter() - t0
        led = pl.read_parquet(run / 'ledger.parquet')
        v = evaluate(run)
        res[name] = dict(wall=wall, n=led.height, ids=sorted(led['trial_id'].to_list()), verdict=v['verdict'],
                         sharpe=next(c['details'].get('estimate') for c in v['checks'] if c['name'] == 'net_sharpe_ci'))
        print(f"   {wall:.1f} s for {led.height} trials ({3600 * led.height / wall:,.0f} trials/hour); candidate net Sharpe "
              f"{res[name]['sharpe']:.4f}, {v['verdict']}", flush=True)
        if t_ray is not None:
            import ray; ray.shutdown()
    s = res['serial']['wall']
    print(f"\n{'mode':<24} {'wall s':>8} {'trials/hour':>12} {'speed-up':>9} {'efficiency':>11}")
    for k, r in res.items():
        w = 1 if k == 'serial' else 2
        print(f"{k:<24} {r['wall']:8.1f} {3600 * r['n'] / r['wall']:12,.0f} {s / r['wall']:9.2f} {s / r['wall'] / w:11.0%}")
    same = len({tuple(r['ids']) for r in res.values()}) == 1 and len({round(r['sharpe'], 9) for r in res.values()}) == 1
    over = res['ray, local, 2 CPUs']['wall'] / res['process pool, 2 jobs']['wall'] - 1
    print(f"same trials and candidate net Sharpe in every mode: {same}")
    print(load_line('machine load at end:'))
    print(f"{'OK' if over <= 0.10 and same else 'MISS'}: Ray's overhead against the process pool {over:+.0%} (target <= +10%); "
          f"identical results {same}")
    if a.optuna:
        sweep(a.optuna, data, root)


def _noop(task, data, run_dir): return {'trial_id': task['trial_id']}


def sweep(n: int, data, root: Path):
    import math
    from yooptx.config import load_config
    from yooptx.experiments.bakeoff import bakeoff
    from yooptx.experiments.sweeps import read_sweeps
    from yooptx.gate import evaluate
    cfg = load_config('demo', [
        'encoders={"lstm": {"params": {"d_model": 16}, "search": {"method": "optuna", "n_trials": %d, "pruner": "median", '
        '"space": {"lr": {"low": 0.0001, "high": 0.01, "log": true}, "d_model": [8, 16, 32], "dropout": {"low": 0.0, "high": 0.3}}}}}' % n,
        'ensembles={}', 'baselines=["buy_hold", "momentum"]', 'seeds=[0]', 'budget.max_epochs=3',
        f'budget.max_trials_per_encoder={n}', 'track.enabled=false'])
    print(f"\n-- Optuna sweep: {n} points of the LSTM (lr, d_model, dropout), TPE + median pruner, 3 folds x 1 seed, --jobs 2 …", flush=True)
    t0 = time.perf_counter()
    run = bakeoff(cfg, data=data, run_dir=root / 'optuna', jobs=2, threads=1, progress=False)
    wall = time.perf_counter() - t0
    sw = read_sweeps(run)
    v = evaluate(run)
    d = next(c for c in v['checks'] if c['name'] == 'deflated_sharpe')
    st = sw['state'].value_counts()
    print(f"   {wall:.0f} s ({wall / 60:.1f} min); states {dict(st.iter_rows())}; pruned share {(sw['state'] == 'PRUNED').mean():.0%}")
    print(f"   DSR N {v['n_trials']} (sweep points {v['n_sweep_points']}), effective N {v['n_trials_effective']:.1f}; deflated Sharpe "
          f"{d['value']:.3f} (null Sharpe {d['details']['sr0_annualized']:.2f}, without the sweep "
          f"{d['details'].get('sr0_without_sweeps_annualized', float('nan')):.2f}); verdict {v['verdict']}")


if __name__ == '__main__':
    main()
