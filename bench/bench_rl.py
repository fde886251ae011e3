"""RL benchmark (hand-written): environment steps per second of yooptx.rl.env against gym-anytrading's StocksEnv on the
same bars and window, and SAC updates per second on CPU in the frozen (precomputed summaries) and fine-tuned modes.

gym-anytrading is never installed into the project's .venv: it runs in its own venv (--anytrading-python, default
/tmp/gat_venv/bin/python; make one with `python3 -m venv /tmp/gat_venv && /tmp/gat_venv/bin/pip install gym-anytrading`),
in a worker process kept warm, each call stepping it N times with random actions. yooptx's environment steps a
continuous target position through the backtester's execution (costs, units held, drift) and returns a (window x
(features + 1) + 1) observation; gym-anytrading's returns a (window x 2) one (price, diff) and charges a fixed fee.
Candidates take turns in interleaved rounds (bench/_harness.py). Target: >= 10x gym-anytrading's steps/s (single env, and 256 lanes of TradingVecEnv).
Asserts nothing about speed.

    .venv/bin/python bench/bench_rl.py            # 20k bars, window 32
    .venv/bin/python bench/bench_rl.py --quick
"""
import argparse, json, os, subprocess, sys, tempfile, textwrap, time
from pathlib import Path
import numpy as np
import polars as pl
sys.path.insert(0, str(Path(__file__).parent))
from _harness import Target, header, interleave, quick, summarize, verdict

TARGET = 10.0


def make_data(n_bars: int, n_symbols: int = 1, window: int = 32):
    from yooptx.config import load_config
    from yooptx.experiment import prepare
    from yooptx.synth import random_walk
    cfg = load_config({'data': {'name': 'bench'}, 'features': {'preset': 'manual_v1'}, 'splits': {'n_folds': 1, 'val_fraction': 0.0},
                       'costs': {'half_spread_bps': 1.0, 'commission_bps': 1.0}})
    return prepare(cfg, bars=random_walk(n_bars, n_symbols=n_symbols, seed=0), calendar='XNYS', freq='1D')


def ours_steps(env, n: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    acts = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    env.reset(seed=seed); k = 0
    for a in acts:
        _, _, term, trunc, _ = env.step(a); k += 1
        if term or trunc: env.reset()
    return k


WORKER = textwrap.dedent('''
    import sys, json, time, numpy as np, pandas as pd, gymnasium as gym, gym_anytrading
    from gym_anytrading.envs import StocksEnv
    px = np.load(sys.argv[1])
    df = pd.DataFrame({'Open': px, 'High': px, 'Low': px, 'Close': px, 'Volume': np.ones_like(px)})
    W = int(sys.argv[2])
    env = StocksEnv(df=df, window_size=W, frame_bound=(W, len(df)))
    rng = np.random.default_rng(0)
    print(json.dumps({'version': gym_anytrading.__version__ if hasattr(gym_anytrading, '__version__') else '2.x',
                      'obs': list(env.observation_space.shape)}), flush=True)
    for line in sys.stdin:
        n = int(line); env.reset(seed=0); acts = rng.integers(0, 2, n); t0 = time.perf_counter()
        for a in acts:
            _, _, term, trunc, _ = env.step(int(a))
            if term or trunc: env.reset()
        print(json.dumps({'s': time.perf_counter() - t0}), flush=True)
''')


class AnyTrading:
    "gym-anytrading in its own python; each call steps its StocksEnv `n` times."
    def __init__(self, python: str, close: np.ndarray, window: int, n: int, tmp: str):
        np.save(f'{tmp}/px.npy', close); Path(f'{tmp}/gat.py').write_text(WORKER)
        self.p = subprocess.Popen([python, f'{tmp}/gat.py', f'{tmp}/px.npy', str(window)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line: raise RuntimeError(self.p.stderr.read()[-2000:])
        self.info, self.n, self.inner = json.loads(line), n, []
    def __call__(self):
        self.p.stdin.write(f"{self.n}\n"); self.p.stdin.flush()
        self.inner.append(json.loads(self.p.stdout.readline())['s'])
        return self.n
    def close(self): self.p.stdin.close(); self.p.wait(timeout=30)


def sac_updates(market, mode: str, n_updates: int, batch: int = 256) -> float:
    "Gradient updates per second of SAC (one update = actor + critics + entropy coefficient) after a filled buffer."
    import torch
    from yooptx.config import RLSpec
    from yooptx.rl.agent import EncoderExtractor, YSAC, embed
    from yooptx.rl.env import TradingVecEnv
    from yooptx.models.encoders import build_encoder
    enc_params = dict(d_model=32, n_layers=2, n_heads=4)
    m = market
    if mode == 'frozen':
        import copy
        m = copy.copy(market); m.embeddings = embed(build_encoder('transformer', len(market.feature_names), market.window, **enc_params), market)
        pk = {'net_arch': [64, 64]}
    else:
        pk = {'net_arch': [64, 64], 'features_extractor_class': EncoderExtractor, 'share_features_extractor': True,
              'features_extractor_kwargs': dict(encoder='transformer', encoder_params=enc_params, n_features=len(market.feature_names),
                                                window=market.window)}
    env = TradingVecEnv(m, 1, 'train', 256, seed=0)
    model = YSAC('MlpPolicy', env, buffer_size=5000, learning_starts=1000, batch_size=batch, policy_kwargs=pk, seed=0, device='cpu')
    model.learn(1000)                                           # fills the buffer (no updates before learning_starts)
    t0 = time.perf_counter(); model.train(gradient_steps=n_updates, batch_size=batch)
    return n_updates / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--n-bars', type=int, default=5000 if quick() else 20000)
    ap.add_argument('--window', type=int, default=32)
    ap.add_argument('--steps', type=int, default=5000 if quick() else 20000, help='environment steps per timed call')
    ap.add_argument('--updates', type=int, default=50 if quick() else 200, help='SAC updates per timed mode')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--anytrading-python', default='/tmp/gat_venv/bin/python')
    ap.add_argument('--quick', action='store_true')
    a = ap.parse_args()
    import torch
    from yooptx.rl.env import TradingEnv, TradingVecEnv, make_market, rollout
    header('rl: yooptx.rl.env steps/s vs gym-anytrading StocksEnv; SAC updates/s (frozen vs fine-tuned transformer)')
    data = make_data(a.n_bars, window=a.window)
    mk = make_market(data, 0, a.window, 'robust')
    print(f"{a.n_bars:,} daily bars, {len(mk.feature_names)} features, window {a.window}: observation {mk.obs_dim} floats; "
          f"{a.steps:,} random steps per call; torch threads {torch.get_num_threads()}")
    env = TradingEnv(mk, 'train', episode_length=1000)
    vecs = {k: TradingVecEnv(mk, n_envs=k, episode_length=1000, seed=0) for k in (8, 256)}
    def vec(k):
        v = vecs[k]; v.reset(); acts = np.random.default_rng(0).uniform(-1, 1, (a.steps // k, k, 1)).astype(np.float32)
        for x in acts: v.step(x)
        return a.steps
    data16 = make_data(a.n_bars // 16 * 2, n_symbols=16, window=a.window)   # 16 symbols: one rollout lane each
    mk16 = make_market(data16, 0, a.window, 'robust')
    n16 = int((mk16.blocks['train'][:, 1] - mk16.blocks['train'][:, 0] + 1).sum())
    fns = {'yooptx env': lambda: ours_steps(env, a.steps), 'yooptx TradingVecEnv x8': lambda: vec(8),
           'yooptx TradingVecEnv x256': lambda: vec(256),
           'yooptx rollout x16 lanes': lambda: (rollout(mk16, 'train', lambda o: np.zeros(len(o))), n16)[1]}
    gat, tmp = None, tempfile.TemporaryDirectory()
    if Path(a.anytrading_python).exists():
        try:
            gat = AnyTrading(a.anytrading_python, data.bars['close'].to_numpy(), a.window, a.steps, tmp.name)
            fns['gym-anytrading'] = gat
        except Exception as e: print(f"gym-anytrading skipped: its worker failed to start: {e}")
    r = interleave(fns, rounds=a.rounds)
    rate = {k: (n16 if k.startswith('yooptx rollout') else a.steps) / r.median(k) for k in fns}
    for k, v in rate.items(): print(f"{k}: median {v:,.0f} steps/s")
    if gat:
        print(f"gym-anytrading observation {gat.info['obs']} (its own timing inside the worker: median "
              f"{a.steps / sorted(gat.inner)[len(gat.inner) // 2]:,.0f} steps/s)")
        med = summarize('steps/s ratio yooptx env / gym-anytrading', r.ratio('gym-anytrading', 'yooptx env'), r.loads)
        vmed = summarize('steps/s ratio yooptx TradingVecEnv (256 lanes) / gym-anytrading', r.ratio('gym-anytrading', 'yooptx TradingVecEnv x256'), r.loads)
        summarize('steps/s ratio yooptx rollout (16 lanes) / gym-anytrading',
                  [n16 / a.steps * x for x in r.ratio('gym-anytrading', 'yooptx rollout x16 lanes')], r.loads)
        gat.close()
    tmp.cleanup()
    for mode in ('frozen', 'finetune'):
        print(f"SAC updates/s, {mode} transformer (d_model 32, 2 layers, batch 256, CPU): {sac_updates(mk, mode, a.updates):,.1f}", flush=True)
    print()
    if gat: verdict(Target('env steps/s vs gym-anytrading (single env)', med, '>=', TARGET),
                    Target('vectorized env steps/s (256 lanes) vs gym-anytrading', vmed, '>=', TARGET))
    else: verdict(Target('env steps/s vs gym-anytrading', None, '>=', TARGET,
                         note=f"gym-anytrading not found at {a.anytrading_python!r} (python3 -m venv /tmp/gat_venv && /tmp/gat_venv/bin/pip install gym-anytrading)"))


if __name__ == '__main__':
    main()
