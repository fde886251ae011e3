"""Benchmark (hand-written): price-action tokenization throughput on one core, and masked-LM perplexity of the three
tokenizers against their unigram baselines.

1. Throughput: the brooks tokenizer's five fields (`features.build`, polars pinned to ONE thread) plus the vocabulary
   lookup (`Tokenizer.encode`) on 1,000,000 bars (10 symbols x 100,000 1-minute bars); candidates take turns in
   interleaved rounds (bench/_harness.py). Target: >= 1M bars/s on one core. The same with polars' default threads and
   every one of the twelve price-action fields is printed beside it.
2. Masked-LM: for brooks, chronos and sax, the 'pretrain' trial (a 2-layer BERT, d_model 32) on the last walk-forward fold
   of bundled btc_15m bars; validation perplexity vs the unigram perplexity of the same validation tokens (ratio < 1:
   the model learned something about sequences). Printed, not a target. `--quick` (or BENCH_QUICK=1): smaller problems.
"""
import os, sys
os.environ.setdefault('POLARS_MAX_THREADS', '1')          # one core, before polars is imported
import json, tempfile, time
from pathlib import Path
import numpy as np
import polars as pl
from yooptx.features import build
from yooptx.price_action import FIELDS
from yooptx.models.tokens import KINDS, Tokenizer
from yooptx.synth import random_walk
from _harness import Target, header, interleave, quick, summarize, verdict


def throughput(n_bars: int, n_symbols: int) -> Target:
    bars = random_walk(n_bars, n_symbols=n_symbols, seed=1, freq='1m', calendar='24/7')
    n = bars.height
    tok = Tokenizer('brooks').fit(build(bars.head(200_000), list(KINDS['brooks']), freq='1m', calendar='24/7'))
    fields = list(KINDS['brooks'])
    print(f"\n{n:,} bars ({n_symbols} symbols x {n_bars:,} 1m), polars threads: {pl.thread_pool_size()}")
    r = interleave({'brooks': lambda: tok.encode(build(bars, fields, freq='1m', calendar='24/7')),
                    'all12': lambda: build(bars, list(FIELDS), freq='1m', calendar='24/7')}, rounds=3)
    rate = [n / w / 1e6 for w in r.wall['brooks']]
    med = summarize('brooks fields + encode, M bars/s', rate, r.loads, fmt='{:.2f}')
    summarize('all 12 price-action fields, M bars/s', [n / w / 1e6 for w in r.wall['all12']], r.loads, fmt='{:.2f}')
    return Target('brooks tokenization on one core (M bars/s)', med, '>=', 1.0, fmt='{:.2f}')


def mlm(epochs: int, rows: int | None):
    from yooptx.config import load_config
    from yooptx.experiment import prepare
    from yooptx.runs import create_run
    from yooptx.training.pretrain import pretrain_tasks, pretrain_trial
    print(f"\nmasked-LM on btc_15m{' (first %d bars)' % rows if rows else ''}, last fold, {epochs} epochs, BERT 2 x 32 (one core)")
    for kind in ('brooks', 'chronos', 'sax'):
        cfg = load_config({'data': {'name': 'btc_15m'}, 'features': {'preset': 'price_action_v1'}, 'seeds': [0], 'splits': {'n_folds': 3},
                           'encoders': {'bert': {'params': {'d_model': 32, 'n_heads': 4, 'n_layers': 2, 'd_ff': 64, 'window': 32, 'tokenizer': kind,
                                                            'min_count': 5, 'pretrained': True, 'mlm_epochs': epochs}}}, 'baselines': []})
        data = prepare(cfg)
        if rows: data = prepare(cfg, bars=data.bars.head(rows), calendar=data.calendar, freq=data.freq)
        k = data.folds[-1].fold
        task = [t for t in pretrain_tasks(cfg, [k])][0]
        with tempfile.TemporaryDirectory() as d:
            run = create_run(cfg, d, 'run', data)
            t0 = time.perf_counter(); row = pretrain_trial(task, data, run); sec = time.perf_counter() - t0
            h = json.loads((run / Path(row['checkpoint']).parent / 'history.json').read_text())
        v, u = h['history'][-1]['val_perplexity'], h['unigram_perplexity']
        print(f"  {kind:8s} vocab {h['vocab_size']:4d}: val perplexity {v:7.2f} vs unigram {u:7.2f} (ratio {v / u:.3f}); "
              f"{h['train_windows']:,} training windows, {sec:.0f} s", flush=True)


if __name__ == '__main__':
    header('price-action tokens: throughput and masked-LM perplexity')
    q = quick()
    t = throughput(20_000 if q else 100_000, 10)
    mlm(1 if q else 5, 3000 if q else None)
    verdict(t)
