"""Shared benchmark plumbing (hand-written): every bench/bench_*.py times its candidates in interleaved rounds, prints
each ratio as min / median / max over the rounds next to the machine's load, and ends with one line that starts with
OK or MISS and states the target. One module, so that every script measures and reports the same way.

Interleaving: in each round every candidate runs once (the order rotates by one each round), so a load spike on a
shared machine hits all candidates of that round alike; a ratio is taken within each round, never across rounds.
"""
import os, statistics, sys, time
from dataclasses import dataclass, field
from typing import Callable

MIN_ROUNDS = 3


def quick() -> bool:
    "True with `--quick` on the command line or BENCH_QUICK=1 in the environment: smaller problems, same number of rounds."
    return '--quick' in sys.argv or os.environ.get('BENCH_QUICK', '0') not in ('', '0')


def load() -> tuple[float, float, float]:
    "The machine's 1/5/15-minute load averages now."
    return os.getloadavg()


def load_line(prefix: str = 'load') -> str:
    "`load 1.23 / 0.98 / 0.75 (1 / 5 / 15 min) on 2 CPUs`: how busy the machine is right now."
    a, b, c = load()
    return f"{prefix} {a:.2f} / {b:.2f} / {c:.2f} (1 / 5 / 15 min) on {os.cpu_count()} CPUs"


def header(title: str) -> None:
    "Print the benchmark's title with the load at its start."
    print(f"{title}\n{load_line('machine load at start:')}", flush=True)


@dataclass
class Rounds:
    "Seconds per call of each candidate in each round (wall and this process's CPU), the 1-min load at each round's start."
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)
    last: dict = field(default_factory=dict)                   # each candidate's latest return value
    results: dict[str, list] = field(default_factory=dict)     # every round's return values, with keep_all=True

    @property
    def rounds(self) -> int:
        return len(self.loads)

    def ratio(self, num: str, den: str, clock: str = 'wall') -> list[float]:
        "Per-round ratio of `num`'s seconds to `den`'s (a speed-up of `den` over `num`), in the same round."
        t = self.wall if clock == 'wall' else self.cpu
        return [a / b for a, b in zip(t[num], t[den])]

    def median(self, name: str, clock: str = 'wall') -> float:
        return statistics.median((self.wall if clock == 'wall' else self.cpu)[name])


def interleave(fns: dict[str, Callable], rounds: int = MIN_ROUNDS, warmup: bool = True, calls: int = 1,
               keep_all: bool = False) -> Rounds:
    "Time every fn once per round (`calls` calls averaged), the candidates taking turns; an untimed warm-up call each first."
    if rounds < MIN_ROUNDS: raise ValueError(f"rounds={rounds}: a ratio needs at least {MIN_ROUNDS} interleaved rounds")
    names = list(fns)
    out = Rounds({k: [] for k in names}, {k: [] for k in names}, results={k: [] for k in names} if keep_all else {})
    if warmup:
        for k in names: out.last[k] = fns[k]()
    for r in range(rounds):
        out.loads.append(load()[0])
        for k in names[r % len(names):] + names[:r % len(names)]:
            w0, c0 = time.perf_counter(), time.process_time()
            if not keep_all: out.last.pop(k, None)          # free the previous result before timing the next call
            for _ in range(calls): out.last[k] = fns[k]()
            out.wall[k].append((time.perf_counter() - w0) / calls); out.cpu[k].append((time.process_time() - c0) / calls)
            if keep_all: out.results[k].append(out.last[k])
    return out


def spread(values: list[float]) -> tuple[float, float, float]:
    "(min, median, max)."
    return min(values), statistics.median(values), max(values)


def summarize(label: str, values: list[float], loads: list[float] | None = None, fmt: str = '{:.2f}x') -> float:
    "Print `label: min / median / max` over the rounds with the load during them; return the median."
    lo, med, hi = spread(values)
    ld = loads if loads else [load()[0]]
    print(f"{label}: min {fmt.format(lo)} / median {fmt.format(med)} / max {fmt.format(hi)} over {len(values)} rounds; "
          f"1-min load {min(ld):.2f}-{max(ld):.2f} on {os.cpu_count()} CPUs", flush=True)
    return med


@dataclass
class Target:
    "One target: `what` measured as `value` (a median), compared with `threshold` by `op` ('>=' or '<=')."
    what: str
    value: float | None
    op: str
    threshold: float
    fmt: str = '{:.2f}x'
    note: str = ''          # said instead of the value when it could not be measured (value None)
    stat: str = 'median'    # what `value` is

    @property
    def ok(self) -> bool | None:
        if self.value is None: return None
        return self.value >= self.threshold if self.op == '>=' else self.value <= self.threshold

    def __str__(self) -> str:
        flag = {True: 'OK', False: 'MISS', None: 'N/A'}[self.ok]
        got = self.note if self.value is None else f"{self.stat} {self.fmt.format(self.value)}"
        return f"{self.what} {self.op} {self.fmt.format(self.threshold)}: {got} [{flag}]"


def verdict(*targets: Target, extra: str = '') -> bool:
    "Print the closing line, `OK`/`MISS` (N/A when nothing could be measured) then every target; True when all measured ones are met."
    flags = [t.ok for t in targets]
    measured = [f for f in flags if f is not None]
    head = 'N/A' if not measured else ('OK' if all(measured) else 'MISS')
    print(f"{head} — " + '; '.join([str(t) for t in targets] + ([extra] if extra else [])), flush=True)
    return head != 'MISS'
