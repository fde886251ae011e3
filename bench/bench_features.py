"""Benchmark (hand-written): the 'manual_v1' feature preset in yooptx (one lazy polars query, `.over('symbol')`) vs an
equivalent pandas implementation (groupby + rolling, the usual vectorized idioms), same panel, same run.

Both compute the same 19 columns; the script checks they agree before timing. yooptx and pandas take turns in
interleaved rounds (bench/_harness.py); per round the speed-up is pandas seconds / yooptx seconds. Target: >= 5x
in wall-clock time (polars on all its threads, pandas on one: what a user waits for); the CPU-time ratio (work done)
is printed beside it. Asserts nothing about speed. `--quick` (or BENCH_QUICK=1) runs smaller panels.
"""
import argparse, warnings
import numpy as np
import pandas as pd
import polars as pl
from yooptx.features import PRESETS, build
from yooptx.synth import random_walk
from _harness import Target, header, interleave, quick, summarize, verdict

TARGET = 5.0


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


def compare(n_bars: int, n_symbols: int, freq: str, calendar: str, rounds: int) -> Target:
    "Time yooptx and the pandas reference on one synthetic panel in interleaved rounds; print agreement and the ratios."
    bars = random_walk(n_bars, n_symbols=n_symbols, seed=0, freq=freq, calendar=calendar)
    pdf = bars.to_pandas()
    names = PRESETS['manual_v1']
    shape = f"{n_symbols:,} symbols x {n_bars:,} {freq}"
    print(f"\n{bars.height:,} {freq} bars ({shape}, {calendar}), preset manual_v1: {len(names)} features, {pl.thread_pool_size()} polars threads")
    r = interleave({'yooptx': lambda: build(bars, preset='manual_v1', freq=freq, calendar=calendar),
                    'pandas': lambda: pandas_manual_v1(pdf)}, rounds=rounds)
    ours, ref = r.last['yooptx'], r.last['pandas']
    worst = max(float(np.nanmax(np.abs(ours[n].fill_null(np.nan).to_numpy() - ref[n].to_numpy()))) for n in names)
    nulls_agree = all(np.array_equal(ours[n].is_null().to_numpy(), ref[n].isna().to_numpy()) for n in names)
    print(f"agreement: max |yooptx - pandas| = {worst:.2e}, null masks identical: {nulls_agree}")
    print(f"median seconds: yooptx wall {r.median('yooptx'):.3f} cpu {r.median('yooptx', 'cpu'):.3f}; "
          f"pandas wall {r.median('pandas'):.3f} cpu {r.median('pandas', 'cpu'):.3f}")
    med = summarize('speed-up pandas/yooptx, wall', r.ratio('pandas', 'yooptx'), r.loads)
    summarize('speed-up pandas/yooptx, cpu ', r.ratio('pandas', 'yooptx', 'cpu'), r.loads)
    return Target(f"features vs pandas, wall speed-up ({shape})", med, '>=', TARGET)


def main():
    q = quick()
    ap = argparse.ArgumentParser()
    ap.add_argument('--bars', type=int, default=10_000 if q else 50_000, help='bars per symbol (long panel)')
    ap.add_argument('--symbols', type=int, default=20)
    ap.add_argument('--wide-symbols', type=int, default=400 if q else 2_000, help='symbols of the wide panel (500 daily bars each)')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--quick', action='store_true', help='smaller panels')
    a = ap.parse_args()
    header('features: yooptx manual_v1 vs pandas groupby/rolling')
    targets = [compare(a.bars, a.symbols, '15m', '24/7', a.rounds),        # a long panel: few symbols, many intraday bars
               compare(500, a.wide_symbols, '1D', 'XNYS', a.rounds)]      # a wide panel: a stock universe, two years of daily bars
    print()
    verdict(*targets)


if __name__ == '__main__':
    warnings.simplefilter('ignore')
    main()
