"""Benchmark (hand-written): the 'manual_v1' feature preset in yooptx (one lazy polars query, `.over('symbol')`) vs an
equivalent pandas implementation (groupby + rolling, the usual vectorized idioms), same panel, same run.

Both compute the same 19 columns; the script checks they agree before timing. Prints best-of-3 wall and CPU times and
their ratios; asserts nothing about speed.
"""
import argparse, time, warnings
import numpy as np
import pandas as pd
import polars as pl
from yooptx.features import PRESETS, build
from yooptx.synth import random_walk


def best_of(f, k=3):
    "Best wall time and best CPU time (this process, all threads) of k runs, and the last result."
    ts, cs = [], []
    for _ in range(k):
        t0, c0 = time.perf_counter(), time.process_time(); out = f()
        ts.append(time.perf_counter() - t0); cs.append(time.process_time() - c0)
    return min(ts), min(cs), out


def pandas_manual_v1(df: pd.DataFrame) -> pd.DataFrame:
    "manual_v1 in pandas: per-symbol shifts and rolling windows via groupby."
    g = df.groupby('symbol', sort=False)
    def roll(s: pd.Series, n: int):
        return s.groupby(df['symbol'], sort=False).rolling(n)
    def back(x): return x.reset_index(level=0, drop=True)
    lc = np.log(df['close'])
    lr = lc - lc.groupby(df['symbol'], sort=False).shift(1)
    out = pd.DataFrame({'timestamp': df['timestamp'], 'symbol': df['symbol']})
    for k in (1, 5, 20): out[f'ret_{k}'] = lc - lc.groupby(df['symbol'], sort=False).shift(k)
    h, l, c, o, v = df['high'], df['low'], df['close'], df['open'], df['volume']
    out['range_hl'] = np.log(h / l)
    out['close_pos'] = np.where(h > l, (c - l) / (h - l), 0.5)
    out['gap'] = np.log(o / g['close'].shift(1))
    lv = np.log1p(v)
    out['vol_z_20'] = (lv - back(roll(lv, 20).mean())) / back(roll(lv, 20).std())
    clv = np.where(h > l, ((c - l) - (h - c)) / (h - l), 0.0)
    out['vol_imb_20'] = back(roll(pd.Series(v * clv, index=df.index), 20).sum()) / back(roll(v, 20).sum())
    for n in (5, 20, 60): out[f'rv_{n}'] = back(roll(lr, n).std())
    out['skew_20'] = back(roll(lr, 20).skew())
    gain, loss = lr.clip(lower=0), (-lr).clip(lower=0)
    out['rsi_14'] = (back(roll(gain, 14).mean()) - back(roll(loss, 14).mean())) / back(roll(lr.abs(), 14).mean())
    for n in (10, 50): out[f'dist_sma_{n}'] = lc - np.log(back(roll(c, n).mean()))
    dow, month = df['timestamp'].dt.dayofweek.astype(float), df['timestamp'].dt.month.astype(float) - 1
    out['dow_sin'], out['dow_cos'] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
    out['month_sin'], out['month_cos'] = np.sin(2 * np.pi * month / 12), np.cos(2 * np.pi * month / 12)
    return out.replace([np.inf, -np.inf], np.nan)


def compare(n_bars: int, n_symbols: int, freq: str, calendar: str):
    "Time yooptx and the pandas reference on one synthetic panel; print agreement and the ratio."
    bars = random_walk(n_bars, n_symbols=n_symbols, seed=0, freq=freq, calendar=calendar)
    pdf = bars.to_pandas()
    names = PRESETS['manual_v1']
    print(f"\n{bars.height:,} {freq} bars ({n_symbols:,} symbols x {n_bars:,}, {calendar}), preset manual_v1: {len(names)} features, {pl.thread_pool_size()} polars threads")
    t_ours, c_ours, ours = best_of(lambda: build(bars, preset='manual_v1', freq=freq, calendar=calendar))
    t_pd, c_pd, ref = best_of(lambda: pandas_manual_v1(pdf), k=1 if n_symbols > 100 else 3)
    worst = max(float(np.nanmax(np.abs(ours[n].fill_null(np.nan).to_numpy() - ref[n].to_numpy()))) for n in names)
    nulls_agree = all(np.array_equal(ours[n].is_null().to_numpy(), ref[n].isna().to_numpy()) for n in names)
    print(f"agreement: max |yooptx - pandas| = {worst:.2e}, null masks identical: {nulls_agree}")
    print(f"yooptx build  wall {t_ours:7.3f} s   cpu {c_ours:7.3f} s")
    print(f"pandas        wall {t_pd:7.3f} s   cpu {c_pd:7.3f} s")
    print(f"speed-up pandas/yooptx: wall {t_pd / t_ours:5.1f}x   cpu {c_pd / c_ours:5.1f}x   (target >= 5x wall)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bars', type=int, default=50_000, help='bars per symbol (long panel)')
    ap.add_argument('--symbols', type=int, default=20)
    a = ap.parse_args()
    compare(a.bars, a.symbols, '15m', '24/7')       # a long panel: few symbols, many intraday bars
    compare(500, 2_000, '1D', 'XNYS')               # a wide panel: a stock universe, two years of daily bars


if __name__ == '__main__':
    warnings.simplefilter('ignore')
    main()
