"""Benchmark (hand-written): training throughput of yooptx's `transformer` encoder against HF `PatchTSTForPrediction`.

Same shapes for both (CPU, fp32): context 96 bars, 7 channels, d_model 128, 3 layers, 16 heads, batch 32. One
training step = forward + backward + AdamW step on a regression target with MSE (ours: encoder + a
regression head; HF: PatchTSTForPrediction with prediction_length 1, built from a local PatchTSTConfig with its
default patching, patch_length = patch_stride = 1; a second HF row uses the paper's patching 16/8 for context).
Also: achieved FLOP/s of our training step (FLOPs counted with torch.utils.flop_counter.FlopCounterMode) as a
fraction of a measured 2048 x 2048 fp32 matmul on the same machine. Timing: every candidate and the matmul take
turns in each of several rounds and the best round counts (robust to other processes sharing the CPU).
Targets: >= 1.5x HF samples/s, >= 30% of matmul FLOP/s. Prints numbers and ratios; asserts nothing.
`--quick` runs fewer rounds.
"""
import os, sys, time, warnings
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from yooptx.models.encoders import build_encoder, build_head

B, L, C, D, LAYERS, HEADS = 32, 96, 7, 128, 3, 16
QUICK = '--quick' in sys.argv
ROUNDS, STEPS = (2, 1) if QUICK else (5, 2)


def best_seconds(fns: dict, rounds: int = ROUNDS, steps: int = STEPS) -> dict:
    "Seconds per call of each fn, best of `rounds`; the candidates take turns in every round so a shared machine's load hits all alike."
    for f in fns.values(): f()                         # warm-up
    best = {k: float('inf') for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps): f()
            best[k] = min(best[k], (time.perf_counter() - t0) / steps)
    return best


def ours(mask: bool = False):
    "Training step closure, FLOPs per step, parameter count for the yooptx transformer + regression head."
    torch.manual_seed(0)
    enc = build_encoder('transformer', C, L, d_model=D, n_layers=LAYERS, n_heads=HEADS, dropout=0.0)
    head = build_head('regression', D)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    x, y = torch.randn(B, L, C), torch.randn(B, 1)
    m = None
    if mask:   # a realistic batch: a quarter of the windows start with padding
        m = torch.ones(B, L, dtype=torch.bool); m[: B // 4, : L // 3] = False
    enc.train(); head.train()
    def fwd_bwd():
        loss = F.mse_loss(head(enc(x, m).summary), y)
        loss.backward()
    def step():
        opt.zero_grad(set_to_none=True); fwd_bwd(); opt.step()
    with FlopCounterMode(display=False) as fc: fwd_bwd()
    opt.zero_grad(set_to_none=True)
    return step, fc.get_total_flops(), sum(p.numel() for p in params)


def hf(patch_length: int | None = None):
    "Training step closure, FLOPs per step, parameter count for HF PatchTSTForPrediction."
    from transformers import PatchTSTConfig, PatchTSTForPrediction
    torch.manual_seed(0)
    kw = {} if patch_length is None else {'patch_length': patch_length, 'patch_stride': patch_length // 2}
    cfg = PatchTSTConfig(num_input_channels=C, context_length=L, d_model=D, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, prediction_length=1, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); model = PatchTSTForPrediction(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(B, L, C), torch.randn(B, 1, C)
    model.train()
    def fwd_bwd(): model(past_values=x, future_values=y).loss.backward()
    def step():
        opt.zero_grad(set_to_none=True); fwd_bwd(); opt.step()
    with FlopCounterMode(display=False) as fc: fwd_bwd()
    opt.zero_grad(set_to_none=True)
    return step, fc.get_total_flops(), sum(p.numel() for p in model.parameters()), cfg


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs visible "
          f"(the machine may be shared: absolute numbers are noisy, ratios less so)")
    print(f"shapes: batch {B}, context {L}, channels {C}, d_model {D}, layers {LAYERS}, heads {HEADS}; CPU fp32\n")
    n = 2048
    a, m = torch.randn(n, n), torch.randn(n, n)
    models = {'yooptx transformer': ours(), 'yooptx transformer (padded batch)': ours(mask=True),
              'HF PatchTSTForPrediction (default patch 1/1)': hf()[:3], 'HF PatchTSTForPrediction (patch 16/8)': hf(16)[:3]}
    sec = best_seconds({'matmul': lambda: a @ m, **{k: v[0] for k, v in models.items()}})
    peak = 2 * n ** 3 / sec['matmul']
    rows = [(name, B / sec[name], flops, flops / sec[name], n_params) for name, (_, flops, n_params) in models.items()]
    print(f"{'model':46s} {'samples/s':>10s} {'GFLOP/step':>11s} {'GFLOP/s':>8s} {'params':>9s}")
    for name, sps, flops, fps, n_params in rows:
        print(f"{name:46s} {sps:10.1f} {flops / 1e9:11.2f} {fps / 1e9:8.1f} {n_params:9d}")
    print(f"{'2048x2048 fp32 matmul':46s} {'':10s} {'':11s} {peak / 1e9:8.1f}")
    ours_sps, hf_sps, hf16_sps = rows[0][1], rows[2][1], rows[3][1]
    print(f"\nsamples/s ratio, ours / HF default patching: {ours_sps / hf_sps:.2f}x (target >= 1.5x)")
    print(f"samples/s ratio, ours / HF patch 16/8:       {ours_sps / hf16_sps:.2f}x (context only)")
    print(f"FLOP/s of our training step / matmul FLOP/s:  {rows[0][3] / peak:.1%} (target >= 30%)")


if __name__ == '__main__':
    main()
