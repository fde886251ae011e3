"""Benchmark (hand-written): yooptx.backtest.run on an SMA-crossover strategy vs a straightforward pandas bar-by-bar
event loop (measured in the same run on a subset and extrapolated per bar) and vs vectorbt (if a separate venv with it
exists, see --vectorbt-python; never installed into the project's .venv).

The market is a geometric random walk built with numpy (each open = the previous close times a small gap; volume
lognormal), so that generating 10M bars takes seconds; the strategy is long when the 20-bar mean of closes is above the
50-bar mean, short below, decided at a bar's close and filled at the next open with 1.5 bps per unit of turnover. The
event loop implements the same convention and costs, and the script checks that both give the same final equity on the
subset. Prints bars/s and ratios; asserts nothing about speed.

    .venv/bin/python bench/bench_backtest.py                       # 1M bars x 10 symbols
    .venv/bin/python bench/bench_backtest.py --n-bars 100000 --vectorbt-python /tmp/vbt_venv/bin/python
"""
import argparse, json, os, subprocess, sys, tempfile, textwrap, time
import numpy as np
import pandas as pd
import polars as pl
from yooptx.backtest import run

FAST, SLOW, COST_BPS = 20, 50, 1.5


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
    "Per symbol: the bar-by-bar loop, returning final equity (1 = start) under the engine's convention."
    res = {}
    for sym, g in df.groupby('symbol', sort=True):
        equity, held, decided = 1.0, 0.0, None
        rows = list(g.itertuples(index=False))
        win, n = [], len(rows)
        for j, row in enumerate(rows):
            target = decided if decided is not None else 0.0     # the decision of the previous bar fills at this open
            cost = abs(target - held) * COST_BPS / 1e4
            held = target
            nxt = rows[j + 1].open if j + 1 < n else row.close   # open-to-open; the last bar marks to its close
            equity *= 1 + held * (nxt / row.open - 1) - cost
            win.append(row.close)
            if len(win) > SLOW: win.pop(0)
            decided = float(np.sign(sum(win[-FAST:]) / FAST - sum(win) / SLOW)) if len(win) == SLOW else 0.0
        res[sym] = equity
    return res


VBT_SCRIPT = textwrap.dedent('''
    import json, sys, time, numpy as np, pandas as pd, vectorbt as vbt
    d = np.load(sys.argv[1]); o, c = d['open'], d['close']          # (time, symbol)
    def sim(o, c):
        cl = pd.DataFrame(c); fast, slow = cl.rolling(20).mean(), cl.rolling(50).mean()
        target = np.sign(fast - slow).fillna(0.0).shift(1).fillna(0.0)   # decided at the close, ordered at the next open
        return vbt.Portfolio.from_orders(close=pd.DataFrame(c), price=pd.DataFrame(o), size=target, size_type='targetpercent',
                                         fees=1.5e-4, init_cash=1.0, freq='1min', cash_sharing=False)
    sim(o[:500, :2], c[:500, :2]).value()                          # numba compilation, not timed
    t0 = time.perf_counter(); pf = sim(o, c); v = pf.value().iloc[-1].to_numpy(); t = time.perf_counter() - t0
    print(json.dumps({"seconds": t, "final_equity_mean": float(v.mean()), "version": vbt.__version__}))
''')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n-bars', type=int, default=1_000_000, help='bars per symbol')
    ap.add_argument('--n-symbols', type=int, default=10)
    ap.add_argument('--loop-bars', type=int, default=100_000, help='bars per symbol of the subset the pandas loop runs on')
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--vectorbt-python', default='/tmp/vbt_venv/bin/python', help='python of a separate venv with vectorbt')
    a = ap.parse_args()
    bars = make_bars(a.n_bars, a.n_symbols)
    N = bars.height
    print(f"SMA({FAST}/{SLOW}) crossover, {a.n_symbols} symbols x {a.n_bars:,} 1m bars = {N:,} bars, {COST_BPS} bps per unit turnover; "
          f"{os.cpu_count()} CPUs, polars {pl.__version__}, {pl.thread_pool_size()} threads")

    ts, cs, tsig = [], [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time(); res = ours(bars); ts.append(time.perf_counter() - t0); cs.append(time.process_time() - c0)
        t0 = time.perf_counter(); sma_signals(bars); tsig.append(time.perf_counter() - t0)
    t_ours = min(ts)
    print(f"yooptx (signals + backtest + trades + metrics): best of {a.repeat}: {t_ours:.2f} s wall ({min(cs):.2f} s CPU) = {N / t_ours:,.0f} bars/s, "
          f"of which the SMA signals (polars) {min(tsig):.2f} s; {res.trades.height:,} trades, net Sharpe {res.metrics['sharpe']:.2f}")

    # the reference loop on a subset (2 symbols x loop_bars), extrapolated per bar; check both agree there
    sub = make_bars(a.loop_bars, 2, seed=1)
    t0 = time.perf_counter(); eq_loop = pandas_loop(sub.to_pandas()); t_loop = time.perf_counter() - t0
    sres = ours(sub)
    eq_ours = sres.symbol_equity.group_by('symbol').agg(pl.col('equity').last()).sort('symbol')
    diff = max(abs(eq_loop[s] - 2 * e) for s, e in eq_ours.iter_rows())      # each sleeve holds half the capital
    loop_rate = sub.height / t_loop
    print(f"pandas event loop (itertuples, bar by bar) on {sub.height:,} bars: {t_loop:.2f} s = {loop_rate:,.0f} bars/s "
          f"(extrapolated to {N:,} bars: {N / loop_rate:,.0f} s); final equity agrees with yooptx to {diff:.1e}")
    print(f"ratio: yooptx is {N / t_ours / loop_rate:,.0f}x the pandas loop's bars/s")

    if a.vectorbt_python and os.path.exists(a.vectorbt_python):
        with tempfile.TemporaryDirectory() as d:
            S = a.n_symbols
            np.savez(f'{d}/bars.npz', open=bars['open'].to_numpy().reshape(S, -1).T, close=bars['close'].to_numpy().reshape(S, -1).T)
            p = f'{d}/vbt.py'
            with open(p, 'w') as f: f.write(VBT_SCRIPT)
            r = subprocess.run([a.vectorbt_python, p, f'{d}/bars.npz'], capture_output=True, text=True)
        if r.returncode == 0:
            v = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"vectorbt {v['version']} Portfolio.from_orders (targetpercent at the next open, numba, compiled before timing): "
                  f"{v['seconds']:.2f} s = {N / v['seconds']:,.0f} bars/s; ratio yooptx/vectorbt = {v['seconds'] / t_ours:.2f}x "
                  f"(vectorbt rebalances drift every bar and counts it as turnover, so equities differ slightly)")
        else: print(f"vectorbt skipped: its run failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    else: print(f"vectorbt skipped: no python at {a.vectorbt_python!r} (create a separate venv: python -m venv /tmp/vbt_venv && /tmp/vbt_venv/bin/pip install vectorbt)")


if __name__ == '__main__':
    main()
