"""The README runs as written: every shell command and every Python snippet of README.md, in the README's order, as a
new user would type them, against a scratch $YOOPTX_HOME with smoke settings ($YOOPTX_SMOKE=1: one seed, one short
epoch, one configuration per family; BENCH_QUICK=1 for the benchmarks). A README that drifts from the code fails here.

What is not run literally, and why (the table below says it again per command):
- `make test` would run this test again; `make lab` starts a server that waits for a browser. Both are dry-run
  (`make -n`), which still fails if the target is gone. `make demo` runs for real with the venv taken as installed
  (`make -o .venv/.yooptx-installed`): a reinstall from the scratch copy would write the scratch path into the venv.
- `<run_id>` is replaced by the run folder the last `yooptx bakeoff` printed, `<model>` by the model name `registry
  register` printed; any other `<...>` placeholder fails the test (a reader could not type it either).
- A command the README itself says is refused must exit 2 with the refusal it describes.
- `my.csv` / `us.csv` (the ingest examples) are written from the bundled samples: a BTC CSV with ISO timestamps and a
  US stock CSV with month/day/year dates, as a user would bring them.
Tracking stays on (the README's registry commands need it), into the scratch home's MLflow store.
"""
import os, re, shutil, subprocess, time
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / 'README.md'
DRY_RUN = {'make test': 'would run this test again', 'make lab': 'starts JupyterLab and waits for a browser'}
REFUSED = {   # a README command (without its comment) that the README says is refused -> what the refusal must say
    '.venv/bin/yooptx registry promote <model> 1': "refused: verdict_go: the version's verdict is NO-GO",
    '.venv/bin/yooptx registry rollback <model>': 'no previous champion',
}
PLACEHOLDER = re.compile(r'<[a-z_]+>')


def readme_blocks(text: str) -> list[tuple[str, str]]:
    "The fenced ```bash and ```python blocks of the README, in order."
    return [(m[1], m[2]) for m in re.finditer(r'^```(bash|python)\n(.*?)^```', text, re.S | re.M)]


def shell_lines(block: str) -> list[str]:
    "One command per line (a trailing backslash continues it); blank and comment-only lines dropped."
    out, cur = [], ''
    for line in block.splitlines():
        cur += line
        if cur.endswith('\\'): cur = cur[:-1]; continue
        if cur.strip() and not cur.strip().startswith('#'): out.append(cur.strip())
        cur = ''
    return out


def strip_comment(line: str) -> str:
    "The command without its trailing `# comment` (a # that starts a word outside quotes, as bash reads it)."
    quote = None
    for i, ch in enumerate(line):
        if quote: quote = None if ch == quote else quote
        elif ch in '\'"': quote = ch
        elif ch == '#' and (i == 0 or line[i - 1].isspace()): return line[:i].rstrip()
    return line


def test_the_readme_blocks_are_found():
    "The extraction itself: the README has the blocks this test runs (an empty list would pass vacuously)."
    blocks = readme_blocks(README.read_text())
    kinds = [k for k, _ in blocks]
    assert kinds.count('bash') >= 8 and kinds.count('python') >= 3, kinds
    cmds = [c for k, b in blocks if k == 'bash' for c in shell_lines(b)]
    assert any(c.startswith('make demo') for c in cmds) and any('yooptx bakeoff' in c for c in cmds)
    assert shell_lines("a \\\n  b  # x\n# only a comment\n\nc") == ['a   b  # x', 'c']
    assert strip_comment("x --reason 'a # b' --n 3  # c <model>") == "x --reason 'a # b' --n 3" and strip_comment('a#b') == 'a#b'


def _user_files(cwd: Path) -> None:
    "my.csv and us.csv, the files the README's ingest examples bring."
    from yooptx.data import DataCatalog
    cat = DataCatalog()
    btc = cat.load('btc_1d', start='2021-01-01')
    btc.select('timestamp', 'open', 'high', 'low', 'close', 'volume').write_csv(cwd / 'my.csv')
    g = cat.load('googl_1d', start='2017-01-01')
    g.with_columns(date=g['timestamp'].dt.strftime('%m/%d/%Y')).select('date', 'open', 'high', 'low', 'close', 'volume').write_csv(cwd / 'us.csv')


@pytest.fixture(scope='module')
def scratch(tmp_path_factory):
    "A folder laid out like the repository (links to its code, venv and Makefile; its own reports/ copy and home)."
    cwd = tmp_path_factory.mktemp('readme')
    for name in ('.venv', 'yooptx', 'bench', 'nbs', 'data', 'Makefile', 'setup.py', 'settings.ini', 'pyproject.toml',
                 'constraints.txt', 'README.md'):
        (cwd / name).symlink_to(REPO / name)
    (cwd / 'reports').mkdir()
    for nb in (REPO / 'reports').glob('*.ipynb'): shutil.copy(nb, cwd / 'reports' / nb.name)
    home = cwd / 'home'
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ('YOOPTX_NO_TRACK', 'MLFLOW_TRACKING_URI', 'YOOPTX_REPORTS')}
    env.update(YOOPTX_HOME=str(home), YOOPTX_SMOKE='1', BENCH_QUICK='1', PYTHONUNBUFFERED='1')
    return cwd, home, env


def _substitute(cmd: str, state: dict, home: Path) -> str:
    if '<run_id>' in cmd:
        assert state.get('run'), f"{cmd!r} uses <run_id> before any `yooptx bakeoff` printed a run folder"
        cmd = cmd.replace('reports/runs/<run_id>', state['run'])
    if '<model>' in cmd:
        assert state.get('model'), f"{cmd!r} uses <model> before `yooptx registry register` printed one"
        cmd = cmd.replace('<model>', state['model'])
    left = PLACEHOLDER.findall(cmd)
    assert not left, f"README command {cmd!r} has placeholder(s) {left} that a reader cannot fill in"
    return cmd


def test_every_readme_command_and_snippet_runs(scratch, monkeypatch):
    cwd, home, env = scratch
    _user_files(cwd)
    state, ran = {}, []
    for kind, block in readme_blocks(README.read_text()):
        if kind == 'python':
            for k in ('YOOPTX_HOME', 'YOOPTX_SMOKE'): monkeypatch.setenv(k, env[k])
            for k in ('YOOPTX_NO_TRACK', 'MLFLOW_TRACKING_URI', 'YOOPTX_REPORTS'): monkeypatch.delenv(k, raising=False)   # as for the shell
            monkeypatch.chdir(cwd)
            ns = state.setdefault('ns', {'__name__': '__readme__'})
            t0 = time.perf_counter()
            try: exec(compile(block, 'README.md (python block)', 'exec'), ns)
            except Exception as e: pytest.fail(f"README python block failed: {type(e).__name__}: {e}\n{block}")
            print(f"{time.perf_counter() - t0:6.1f}s  python: {block.splitlines()[0]}", flush=True)
            ran.append(('python', block.splitlines()[0]))
            continue
        for line in shell_lines(block):
            dry = next((t for t in DRY_RUN if line.startswith(t)), None)
            cmd = f"make -n {dry.split()[1]}" if dry else _substitute(strip_comment(line), state, home)
            if cmd.startswith('make ') and not dry: cmd = cmd.replace('make ', 'make -o .venv/.yooptx-installed ', 1)   # never reinstall here
            t0 = time.perf_counter()
            p = subprocess.run(['bash', '-o', 'pipefail', '-c', cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
            print(f"{time.perf_counter() - t0:6.1f}s  {cmd[:150]}", flush=True)
            out = p.stdout + p.stderr
            refused = REFUSED.get(strip_comment(line))
            if refused: state.setdefault('refused', set()).add(strip_comment(line))
            if refused:
                assert p.returncode == 2 and refused in out, f"README says {line!r} is refused ({refused!r}); got exit {p.returncode}:\n{out[-3000:]}"
            else:
                assert p.returncode == 0, f"README command failed (exit {p.returncode}): {line}\nran as: {cmd}\n{out[-4000:]}"
            if 'yooptx bakeoff' in line or line.startswith('make demo'):
                runs = re.findall(r'^run folder: (\S+)$', p.stdout, re.M)
                assert runs, f"{line!r} printed no run folder:\n{p.stdout[-2000:]}"
                state['run'] = runs[-1]
            if 'registry register' in line:
                state['model'] = re.search(r'^registered (\S+) version', p.stdout, re.M)[1]
            ran.append(('bash', line))
    # what ran left what the README promised, and the venv it ran in untouched
    assert str(cwd) not in (REPO / '.venv' / 'bin' / 'yooptx').read_text()
    assert state.get('refused') == set(REFUSED), f"refusals listed here but not in the README: {set(REFUSED) - state.get('refused', set())}"
    runs = [p for p in (home / 'runs').iterdir() if (p / 'config.yaml').exists()]
    assert len(runs) >= 8, sorted(p.name for p in runs)
    assert (cwd / 'preds.parquet').exists() and (cwd / 'submission.csv').exists() and (cwd / 'reports' / 'out.ipynb').exists()
    assert (home / 'es_30m').exists() or any(home.rglob('es_30m*')), sorted(p.name for p in home.iterdir())
    assert all(state['ns'].get(k) is not None for k in ('bars', 'feats', 'folds', 'dm', 'res')), 'python snippets left no results'
    assert len([r for r in ran if r[0] == 'bash']) >= 30, len(ran)
