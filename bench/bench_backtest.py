"""Benchmark (hand-written): yooptx.backtest.run on an SMA-crossover strategy vs a straightforward pandas bar-by-bar
event loop (measured in the same run on a subset and extrapolated per bar) and vs vectorbt (when it is importable here
or in a separate venv, see --vectorbt-python; never installed into the project's .venv).

The market is a geometric random walk built with numpy (each open = the previous close times a small gap; volume
lognormal), so that generating 10M bars takes seconds; the strategy is long when the 20-bar mean of closes is above the
50-bar mean, short below, decided at a bar's close and filled at the next open with 1.5 bps per unit of turnover. The
event loop implements the same convention and costs, and the script checks that both give the same final equity on the
subset. yooptx, the loop and vectorbt (kept warm in a worker process) take turns in interleaved rounds
(bench/_harness.py); each ratio is bars/s over bars/s within a round. Target: >= 1.5x vectorbt's bars/s (median);
without vectorbt the closing line says so and gives the ratio to the pandas loop instead. Asserts nothing about speed.

    .venv/bin/python bench/bench_backtest.py                       # 1M bars x 10 symbols
    .venv/bin/python bench/bench_backtest.py --quick               # 200k bars x 10 symbols (or BENCH_QUICK=1)
    .venv/bin/python bench/bench_backtest.py --n-bars 100000 --vectorbt-python /tmp/vbt_venv/bin/python
"""
import argparse, importlib.util, json, os, subprocess, sys, tempfile, textwrap
import numpy as np
import pandas as pd
import polars as pl
from yooptx.backtest import run
from _harness import Target, header, interleave, quick, summarize, verdict

FAST, SLOW, COST_BPS = 20, 50, 1.5
TARGET = 1.5


def make_bars(n_bars: int, n_symbols: int, seed: int = 0) -> pl.DataFrame:
    "A minute-bar random walk for `n_symbols` symbols in the bars contract (sorted by symbol, then time)."
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((n_symbols, n_bars)) * 5e-4
    close = 100 * np.exp(np.cumsum(r, axis=1))
    prev = np.concatenate([np.full((n_symbols, 1), 100.0), close[:, :-1]], axis=1)
    opn = prev * np.exp(rng.standard_normal((n_symbols, n_bars)) * 5e-5)
    ts = (np.datetime64('2020-01-01T00:00', 'us') + np.arange(n_bars) * np.timedelta64(60_000_000, 'us')).astype(np.int64)
    return pl.DataFrame({
        'timestamp': pl.Series(np.tile(ts, n_symbols)).cast(pl.Datetime('us')).dt.replace_time_zone('UTC'),
        'symbol': np.repeat([f'S{i:02d}' for i in range(n_symbols)], n_bars),
        'open': opn.ravel(), 'high': np.maximum(opn, close).ravel() * 1.0002, 'low': np.minimum(opn, close).ravel() * 0.9998,
        'close': close.ravel(), 'volume': np.exp(rng.standard_normal(n_symbols * n_bars) + 10)})


def sma_signals(bars: pl.DataFrame) -> pl.DataFrame:
    "SMA(20) - SMA(50) of closes per symbol (null during the warm-up: flat)."
    c = pl.col('close')
    return bars.select('timestamp', 'symbol', prediction=(c.rolling_mean(FAST) - c.rolling_mean(SLOW)).over('symbol'))


def ours(bars: pl.DataFrame):
    "Signals + backtest, end to end."
    return run(bars, sma_signals(bars), costs={'half_spread_bps': COST_BPS, 'commission_bps': 0.0}, calendar='24/7', freq='1m')


def pandas_loop(df: pd.DataFrame) -> dict:
    "Per symbol: the bar-by-bar loop, returning final equity (1 = start) under the engine's convention (units held)."
    res = {}
    for sym, g in df.groupby('symbol', sort=True):
        equity, pos, target_held, decided = 1.0, 0.0, 0.0, None   # pos: the position's value, in units of equity
        rows = list(g.itertuples(index=False))
        win, n = [], len(rows)
        for j, row in enumerate(rows):
            target = decided if decided is not None else 0.0     # the decision of the previous bar fills at this open
            if j == 0 or target != target_held:                  # a fill: trade from the drifted weight to the target
                equity, pos, target_held = equity * (1 - abs(target - pos / equity) * COST_BPS / 1e4), target * equity, target
            nxt = rows[j + 1].open if j + 1 < n else row.close   # open-to-open; the last bar marks to its close
            r = nxt / row.open - 1
            equity, pos = equity + pos * r, pos * (1 + r)        # units held: the position's value moves with the price
            win.append(row.close)
            if len(win) > SLOW: win.pop(0)
            decided = float(np.sign(sum(win[-FAST:]) / FAST - sum(win) / SLOW)) if len(win) == SLOW else 0.0
        res[sym] = equity * (1 - abs(pos / equity) * COST_BPS / 1e4)   # closed at the end of the data, paying the exit
    return res


VBT_WORKER = textwrap.dedent('''
    import json, sys, numpy as np, pandas as pd, vectorbt as vbt
    d = np.load(sys.argv[1]); o, c = d['open'], d['close']          # (time, symbol)
    def sim(o, c):
        cl = pd.DataFrame(c); fast, slow = cl.rolling(20).mean(), cl.rolling(50).mean()
        target = np.sign(fast - slow).fillna(0.0).shift(1).fillna(0.0)   # decided at the close, ordered at the next open
        target = target.where(target.ne(target.shift(1)))                 # an order only when the target changes: units held
        return vbt.Portfolio.from_orders(close=pd.DataFrame(c), price=pd.DataFrame(o), size=target, size_type='targetpercent',
                                         fees=1.5e-4, init_cash=1.0, freq='1min', cash_sharing=False)
    sim(o[:500, :2], c[:500, :2]).value()                          # numba compilation, not timed
    print(json.dumps({"version": vbt.__version__}), flush=True)
    for _ in sys.stdin:                                            # one simulation per line asked for
        v = sim(o, c).value().iloc[-1].to_numpy()
        print(json.dumps({"final_equity_mean": float(v.mean())}), flush=True)
''')


class VectorbtWorker:
    "vectorbt in its own process (its venv may differ from ours), compiled once; each call runs one full simulation."
    def __init__(self, python: str, bars: pl.DataFrame, n_symbols: int, tmp: str):
        np.savez(f'{tmp}/bars.npz', open=bars['open'].to_numpy().reshape(n_symbols, -1).T,
                 close=bars['close'].to_numpy().reshape(n_symbols, -1).T)
        with open(f'{tmp}/vbt.py', 'w') as f: f.write(VBT_WORKER)
        self.p = subprocess.Popen([python, f'{tmp}/vbt.py', f'{tmp}/bars.npz'], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line: raise RuntimeError(self.p.stderr.read().strip().splitlines()[-1:] or self.p.wait())
        self.version = json.loads(line)['version']

    def __call__(self) -> dict:
        self.p.stdin.write('run\n'); self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close(); self.p.wait()


def vectorbt_python(given: str) -> str | None:
    "A python that can import vectorbt: this one, else `given` if it exists."
    if importlib.util.find_spec('vectorbt') is not None: return sys.executable
    return given if given and os.path.exists(given) else None


def main():
    q = quick()
    ap = argparse.ArgumentParser()
    ap.add_argument('--n-bars', type=int, default=200_000 if q else 1_000_000, help='bars per symbol')
    ap.add_argument('--n-symbols', type=int, default=10)
    ap.add_argument('--loop-bars', type=int, default=20_000 if q else 100_000, help='bars per symbol of the subset the pandas loop runs on')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--vectorbt-python', default='/tmp/vbt_venv/bin/python', help='python of a separate venv with vectorbt')
    ap.add_argument('--quick', action='store_true', help='smaller problem')
    a = ap.parse_args()
    header('backtest: yooptx.backtest.run vs vectorbt (when installed) and a pandas bar-by-bar loop')
    bars = make_bars(a.n_bars, a.n_symbols)
    N = bars.height
    print(f"SMA({FAST}/{SLOW}) crossover, {a.n_symbols} symbols x {a.n_bars:,} 1m bars = {N:,} bars, {COST_BPS} bps per unit turnover; "
          f"{os.cpu_count()} CPUs, polars {pl.__version__}, {pl.thread_pool_size()} threads")
    sub = make_bars(a.loop_bars, 2, seed=1)      # the reference loop runs on a subset (2 symbols x loop_bars), compared per bar
    sub_pd = sub.to_pandas()
    fns = {'yooptx': lambda: ours(bars), 'signals only': lambda: sma_signals(bars), 'pandas loop': lambda: pandas_loop(sub_pd)}
    vpy, vbt, tmp = vectorbt_python(a.vectorbt_python), None, tempfile.TemporaryDirectory()
    if vpy:
        try: vbt = VectorbtWorker(vpy, bars, a.n_symbols, tmp.name); fns['vectorbt'] = vbt
        except Exception as e: print(f"vectorbt skipped: its worker failed to start: {e}")
    r = interleave(fns, rounds=a.rounds)
    if vbt: vbt.close()
    tmp.cleanup()

    res, t_ours = r.last['yooptx'], r.median('yooptx')
    print(f"yooptx (signals + backtest + trades + metrics): median {t_ours:.2f} s wall ({r.median('yooptx', 'cpu'):.2f} s CPU) = "
          f"{N / t_ours:,.0f} bars/s, of which the SMA signals (polars) {r.median('signals only'):.2f} s; "
          f"{res.trades.height:,} trades, net Sharpe {res.metrics['sharpe']:.2f}")
    eq_loop = r.last['pandas loop']
    eq_ours = ours(sub).symbol_equity.group_by('symbol').agg(pl.col('equity').last()).sort('symbol')
    diff = max(abs(eq_loop[s] - 2 * e) for s, e in eq_ours.iter_rows())      # each sleeve holds half the capital
    t_loop = r.median('pandas loop')
    print(f"pandas event loop (itertuples, bar by bar) on {sub.height:,} bars: median {t_loop:.2f} s = {sub.height / t_loop:,.0f} bars/s "
          f"(extrapolated to {N:,} bars: {N / sub.height * t_loop:,.0f} s); final equity agrees with yooptx to {diff:.1e}")
    # bars/s ratio within each round: (N / t_ours) / (sub.height / t_loop)
    loop_med = summarize('bars/s ratio yooptx / pandas loop', [N / sub.height * x for x in r.ratio('pandas loop', 'yooptx')], r.loads, fmt='{:,.0f}x')
    if vbt:
        ours_mean = a.n_symbols * res.symbol_equity.group_by('symbol').agg(pl.col('equity').last())['equity'].mean()
        print(f"vectorbt {vbt.version} Portfolio.from_orders (targetpercent at the next open, numba, compiled before timing): "
              f"median {r.median('vectorbt'):.2f} s = {N / r.median('vectorbt'):,.0f} bars/s; final equity mean {r.last['vectorbt']['final_equity_mean']:.4f} vs yooptx's {ours_mean:.4f} "
              f"(an order only when the target changes, units held in between as in yooptx; vectorbt does not close at the end)")
        vbt_med = summarize('bars/s ratio yooptx / vectorbt', r.ratio('vectorbt', 'yooptx'), r.loads)
        print()
        verdict(Target(f"backtester vs vectorbt {vbt.version}, bars/s ({N:,} bars)", vbt_med, '>=', TARGET))
    else:
        print(f"vectorbt not found: neither importable here nor at {a.vectorbt_python!r} "
              f"(python -m venv /tmp/vbt_venv && /tmp/vbt_venv/bin/pip install vectorbt)\n")
        verdict(Target('backtester vs vectorbt, bars/s', None, '>=', TARGET,
                       note=f"vectorbt not installed: ratio vs pandas loop median {loop_med:,.0f}x"))


if __name__ == '__main__':
    main()
