"""Benchmark (hand-written), ready for a GPU machine as it is: training throughput (windows per second, forward +
backward + AdamW step) of every numeric encoder family at the sizes of the seeds' grid, in fp32 and under the precision
policy's AMP (bf16 autocast where the GPU supports it, else fp16 with a gradient scaler). On a CPU-only machine it runs
fp32 only (the policy: bf16 autocast is ~10x slower on CPU) and says so; `--device cuda` refuses to run without CUDA.

    python bench/bench_gpu.py                  # every family, the default sizes, on CUDA when present
    python bench/bench_gpu.py --batch 512 --window 90 --steps 50 --families transformer patchtst

Prints one row per (family, precision): windows/s, ms per step, peak GPU memory, and the AMP / fp32 speed-up per family.
The numbers size a sweep: a trial's training time ~ windows per epoch x epochs / (windows/s).
"""
import argparse, os, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import header, load_line, quick

SIZES = {'manual': {'d_model': 64, 'hidden': 128},
         'cnn': {'d_model': 128, 'n_layers': 4},
         'lstm': {'d_model': 128, 'n_layers': 2},
         'transformer': {'d_model': 256, 'n_heads': 8, 'n_layers': 4, 'patch_length': 8, 'patch_stride': 8},
         'patchtst': {'d_model': 128, 'n_heads': 8, 'n_layers': 3, 'patch_length': 8, 'patch_stride': 8}}


def throughput(name, params, F, L, B, steps, device, amp):
    import torch
    from yooptx.models.encoders import build_encoder
    torch.manual_seed(0)
    enc = build_encoder(name, F, L, **params).to(device)
    head = torch.nn.Linear(enc.d_model, 3).to(device)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=1e-3)
    dt = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None
    scaler = torch.amp.GradScaler('cuda') if amp and dt == torch.float16 else None
    x = torch.randn(B, L, F, device=device); m = torch.ones(B, L, dtype=torch.bool, device=device)
    y = torch.randint(0, 3, (B,), device=device)
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=dt, enabled=amp):
            loss = torch.nn.functional.cross_entropy(head(enc(x, m).summary).float(), y)
        if scaler: scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        else: loss.backward(); opt.step()
    for _ in range(3): step()                                  # warm-up (cuDNN autotune, allocator)
    if device == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    if device == 'cuda': torch.cuda.synchronize()
    s = (time.perf_counter() - t0) / steps
    mem = torch.cuda.max_memory_allocated() / 2**20 if device == 'cuda' else float('nan')
    return B / s, s * 1e3, mem, (str(dt).replace('torch.', '') if amp else 'fp32')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--device', choices=['auto', 'cuda', 'cpu'], default='auto')
    ap.add_argument('--batch', type=int, default=64 if quick() else 256)
    ap.add_argument('--window', type=int, default=90)
    ap.add_argument('--features', type=int, default=19)
    ap.add_argument('--steps', type=int, default=3 if quick() else 20)
    ap.add_argument('--families', nargs='*', default=list(SIZES))
    ap.add_argument('--quick', action='store_true')
    a = ap.parse_args()
    import torch
    dev = ('cuda' if torch.cuda.is_available() else 'cpu') if a.device == 'auto' else a.device
    if dev == 'cuda' and not torch.cuda.is_available(): sys.exit("bench_gpu: --device cuda but torch sees no CUDA GPU")
    header(f"bench_gpu: training throughput on {dev} ({torch.cuda.get_device_name(0) if dev == 'cuda' else f'{torch.get_num_threads()} CPU threads'}), "
           f"batch {a.batch} x window {a.window} x {a.features} features, {a.steps} steps")
    if dev == 'cpu': print("   CPU: fp32 only (the precision policy: bf16 autocast is ~10x slower on CPU); run this on a GPU machine for AMP")
    print(f"\n{'family':<12} {'precision':<10} {'windows/s':>11} {'ms/step':>9} {'peak MiB':>9}")
    speed = {}
    for f in a.families:
        for amp in ([False, True] if dev == 'cuda' else [False]):
            w, ms, mem, p = throughput(f, SIZES[f], a.features, a.window, a.batch, a.steps, dev, amp)
            speed[(f, amp)] = w
            print(f"{f:<12} {p:<10} {w:11,.0f} {ms:9.1f} {mem:9.0f}", flush=True)
    if dev == 'cuda':
        print('\nAMP / fp32 speed-up: ' + ', '.join(f"{f} {speed[(f, True)] / speed[(f, False)]:.2f}x" for f in a.families))
    print(load_line('machine load at end:'))
    print(f"OK: measured {len(speed)} (family, precision) throughputs on {dev}")


if __name__ == '__main__':
    main()
