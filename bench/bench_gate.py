"""Gate calibration by simulation: GO rate vs the candidate's true annualized net Sharpe and the test length.

What a bake-off hands the gate is simulated (yooptx.gate.simulate_gate): a candidate with a known net Sharpe,
3 null baselines, 9 sibling configurations correlated 0.5 with it (as grid points of one family are) and 3
seed variants. Under the null (Sharpe 0) the GO rate is the false-GO rate. Targets (issue 8): false GO <= 2%;
GO >= 90% at net Sharpe 1.5 "with realistic sample sizes" — this prints how long that sample has to be.
No pair is timed here (rates, not speeds); the machine's load is printed for the record (bench/_harness.py).
Run: .venv/bin/python bench/bench_gate.py [--sims N] [--quick]
"""
import argparse, time
from yooptx.gate import simulate_gate
from _harness import Target, header, load_line, quick, verdict

q = quick()
ap = argparse.ArgumentParser(); ap.add_argument('--sims', type=int, default=20 if q else 60)
ap.add_argument('--null-sims', type=int, default=100 if q else 300); ap.add_argument('--quick', action='store_true')
a = ap.parse_args()
header('gate: GO rate by simulation (calibration table)')
t0 = time.time()
null = simulate_gate(0.0, 1008, n_sims=a.null_sims, seed=1)
print(f"false-GO rate under the null (4 years of daily bars, {a.null_sims} simulated bake-offs): {null['go_rate']:.1%}  (target <= 2%)")
print(f"  how often each check passes by chance: " + ', '.join(f"{k[5:]} {v:.0%}" for k, v in null.items() if k.startswith('pass_')))
years = (2, 4, 6, 10)
sharpes = (0.5, 1.0, 1.5, 2.0, 3.0)
print(f"\nGO rate ({a.sims} simulated bake-offs per cell; daily bars, 252 a year)")
print('true net Sharpe | ' + ' | '.join(f"{y:>2} years" for y in years))
table = {}
for s in sharpes:
    table[s] = [simulate_gate(s, 252 * y, n_sims=a.sims, seed=2)['go_rate'] for y in years]
    print(f"{s:>15.1f} | " + ' | '.join(f"{r:>8.0%}" for r in table[s]))
print(f"\n({time.time() - t0:.0f}s) The binding checks at moderate Sharpe are the deflated Sharpe (10 trials) and the DM test against "
      f"the best baseline; what matters is Sharpe x sqrt(years), so intraday bars over the same span do not help much.")
print(load_line('machine load at end:'))
enough = next((y for y, r in zip(years, table[1.5]) if r >= 0.9), None)
verdict(Target(f"gate false-GO rate under the null (4 years daily)", null['go_rate'], '<=', 0.02, fmt='{:.1%}',
               stat=f"rate over {a.null_sims} bake-offs"),
        extra=f"GO >= 90% at net Sharpe 1.5 " + (f"from {enough} years of daily bars" if enough else f"not reached within {years[-1]} years")
              + f" ({a.sims} bake-offs per cell)")
