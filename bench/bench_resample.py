"""Benchmark (hand-written): session-aware resampling in yooptx vs a plain pandas resample, same data, same run.

pandas' `resample` knows nothing of exchange sessions (it bins on the clock), so it is a lower bound on the
work; the ratio says what calendar awareness costs. Prints times and ratios; asserts nothing about speed.
"""
import time, warnings
import numpy as np
import pandas as pd
import polars as pl
from yooptx.calendars import bar_times
from yooptx.resample import resample
from yooptx.synth import random_walk


def best_of(f, k=3):
    ts = []
    for _ in range(k):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return min(ts)


def main():
    n_days, n_sym = 252, 8
    bars = random_walk(390 * n_days, n_symbols=n_sym, seed=0, freq='1m', calendar='XNYS')
    pdf = bars.to_pandas().set_index('timestamp')
    print(f"{bars.height:,} one-minute bars ({n_sym} symbols x {n_days} NYSE sessions)")
    agg = {'open': 'first', 'high': 'max', 'low': 'min', 'close': 'last', 'volume': 'sum'}
    for to, rule in (('5m', '5min'), ('30m', '30min'), ('1h', '1h'), ('1D', '1D')):
        ours = best_of(lambda: resample(bars, to, 'XNYS', source_freq='1m'))
        # pandas: clock-aligned bins (offset 30min so hourly bins start at :30 like NYSE's), empty bins dropped
        kw = {'offset': '30min'} if rule == '1h' else {}
        ref = best_of(lambda: pdf.groupby('symbol').resample(rule, **kw).agg(agg).dropna(subset=['close']))
        print(f"1m -> {to:>3}: yooptx {ours * 1e3:7.1f} ms   pandas {ref * 1e3:7.1f} ms   ratio yooptx/pandas {ours / ref:5.2f}")


if __name__ == '__main__':
    warnings.simplefilter('ignore')
    main()
