"""Benchmark (hand-written): session-aware resampling in yooptx vs a plain pandas resample, same data, same run.

pandas' `resample` knows nothing of exchange sessions (it bins on the clock), so it is a lower bound on the
work; the speed-up (pandas seconds / yooptx seconds, per interleaved round, bench/_harness.py) says what calendar
awareness costs or saves. Target: >= 2x pandas, wall-clock, for every conversion. Asserts nothing about speed.
`--quick` (or BENCH_QUICK=1) resamples fewer sessions.
"""
import warnings
from yooptx.resample import resample
from yooptx.synth import random_walk
from _harness import Target, header, interleave, quick, summarize, verdict

TARGET = 2.0


def main():
    n_days, n_sym = (63 if quick() else 252), 8
    header('resample: yooptx (exchange sessions) vs pandas groupby.resample (clock bins)')
    bars = random_walk(390 * n_days, n_symbols=n_sym, seed=0, freq='1m', calendar='XNYS')
    pdf = bars.to_pandas().set_index('timestamp')
    print(f"{bars.height:,} one-minute bars ({n_sym} symbols x {n_days} NYSE sessions)")
    agg = {'open': 'first', 'high': 'max', 'low': 'min', 'close': 'last', 'volume': 'sum'}
    meds = {}
    for to, rule in (('5m', '5min'), ('30m', '30min'), ('1h', '1h'), ('1D', '1D')):
        # pandas: clock-aligned bins (offset 30min so hourly bins start at :30 like NYSE's), empty bins dropped
        kw = {'offset': '30min'} if rule == '1h' else {}
        r = interleave({'yooptx': lambda: resample(bars, to, 'XNYS', source_freq='1m'),
                        'pandas': lambda: pdf.groupby('symbol').resample(rule, **kw).agg(agg).dropna(subset=['close'])})
        print(f"1m -> {to:>3}: median yooptx {r.median('yooptx') * 1e3:7.1f} ms   pandas {r.median('pandas') * 1e3:7.1f} ms")
        meds[to] = summarize(f"  speed-up pandas/yooptx 1m -> {to}", r.ratio('pandas', 'yooptx'), r.loads)
    print()
    worst = min(meds, key=meds.get)
    verdict(Target(f"resampling vs pandas, wall speed-up, worst of 5m/30m/1h/1D ({worst}; "
                   + ', '.join(f"{k} {v:.2f}x" for k, v in meds.items()) + ")", meds[worst], '>=', TARGET))


if __name__ == '__main__':
    warnings.simplefilter('ignore')
    main()
