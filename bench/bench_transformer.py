"""Benchmark (hand-written): training throughput of yooptx's `transformer` encoder against HF `PatchTSTForPrediction`.

Same shapes for both (CPU, fp32): context 96 bars, 7 channels, d_model 128, 3 layers, 16 heads, batch 32. One
training step = forward + backward + AdamW step on a regression target with MSE (ours: encoder + a
regression head; HF: PatchTSTForPrediction with prediction_length 1, built from a local PatchTSTConfig with its
default patching, patch_length = patch_stride = 1; a second HF row uses the paper's patching 16/8 for context).
Also: achieved FLOP/s of our training step (FLOPs counted with torch.utils.flop_counter.FlopCounterMode) as a
fraction of a measured 2048 x 2048 fp32 matmul on the same machine. Timing: every candidate and the matmul take
turns in each of several interleaved rounds (bench/_harness.py); ratios are taken within a round and summarized as
min / median / max over the rounds with the machine's load. Targets (on the medians): >= 1.5x HF samples/s at the
same shape (default patching), >= 30% of matmul FLOP/s. Prints numbers and ratios; asserts nothing.
`--quick` (or BENCH_QUICK=1) runs the minimum of 3 rounds with one step per call.
"""
import os, warnings
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from yooptx.models.encoders import build_encoder, build_head
from _harness import Target, header, interleave, quick, summarize, verdict

B, L, C, D, LAYERS, HEADS = 32, 96, 7, 128, 3, 16
ROUNDS, STEPS = (3, 1) if quick() else (5, 2)
HF_TARGET, FLOP_TARGET = 1.5, 0.30


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
    header('transformer: yooptx encoder training step vs HF PatchTSTForPrediction, and FLOP/s vs matmul')
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs visible "
          f"(the machine may be shared: absolute numbers are noisy, ratios less so)")
    print(f"shapes: batch {B}, context {L}, channels {C}, d_model {D}, layers {LAYERS}, heads {HEADS}; CPU fp32\n")
    n = 2048
    a, m = torch.randn(n, n), torch.randn(n, n)
    models = {'yooptx transformer': ours(), 'yooptx transformer (padded batch)': ours(mask=True),
              'HF PatchTSTForPrediction (default patch 1/1)': hf()[:3], 'HF PatchTSTForPrediction (patch 16/8)': hf(16)[:3]}
    r = interleave({'matmul': lambda: a @ m, **{k: v[0] for k, v in models.items()}}, rounds=ROUNDS, calls=STEPS)
    peak = 2 * n ** 3 / r.median('matmul')
    print(f"{ROUNDS} interleaved rounds of {STEPS} step(s) per candidate; table from the median round times")
    print(f"{'model':46s} {'samples/s':>10s} {'GFLOP/step':>11s} {'GFLOP/s':>8s} {'params':>9s}")
    for name, (_, flops, n_params) in models.items():
        sec = r.median(name)
        print(f"{name:46s} {B / sec:10.1f} {flops / 1e9:11.2f} {flops / sec / 1e9:8.1f} {n_params:9d}")
    print(f"{'2048x2048 fp32 matmul':46s} {'':10s} {'':11s} {peak / 1e9:8.1f}\n")
    ours_name, hf_name, hf16_name = list(models)[0], list(models)[2], list(models)[3]
    hf_med = summarize('samples/s ratio, ours / HF default patching (same shape)', r.ratio(hf_name, ours_name), r.loads)
    summarize('samples/s ratio, ours / HF patch 16/8 (context only)       ', r.ratio(hf16_name, ours_name), r.loads)
    summarize('samples/s ratio, ours padded batch / ours                  ', r.ratio(ours_name, 'yooptx transformer (padded batch)'), r.loads)
    flops = models[ours_name][1]
    util = [flops * t_mm / (2 * n ** 3 * t) for t_mm, t in zip(r.wall['matmul'], r.wall[ours_name])]
    util_med = summarize('FLOP/s of our training step / matmul FLOP/s              ', util, r.loads, fmt='{:.1%}')
    print()
    verdict(Target('transformer vs HF PatchTST (same shape), samples/s', hf_med, '>=', HF_TARGET),
            Target('FLOP utilisation of our training step vs 2048^2 fp32 matmul', util_med, '>=', FLOP_TARGET, fmt='{:.0%}'))


if __name__ == '__main__':
    main()
