"""The package's shape: no import circles (module-level and function-local imports alike), wings by concept, the
one-release shims of moved modules, and plan-time refusal of experiments that cannot train (exit 2, nothing written)."""
import ast, subprocess, sys, warnings
from pathlib import Path
import pytest
from conftest import REPO, run_cli, tree

PKG = REPO / 'yooptx'
SHIMS = {'train', 'walkforward', 'bakeoff', 'encoders', 'transformer', 'patchtst', 'losses', 'plots', 'reports', 'views',
         'attention', 'trainviews'}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob('*.py'):
        if p.name == '_modidx.py': continue
        parts = p.relative_to(REPO).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        out[name] = p
    return out


def import_graph() -> dict[str, set[str]]:
    "module -> the yooptx modules it imports anywhere in its body (ast: top level, functions, methods)."
    mods = _modules()
    graph = {}
    for name, p in mods.items():
        pkg = name if p.name == '__init__.py' else name.rpartition('.')[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    up = pkg.split('.')[:len(pkg.split('.')) - node.level + 1]
                    base = '.'.join(up + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else: continue
            for t in targets:
                while t and t not in mods: t = t.rpartition('.')[0]      # `import yooptx.a.b` depends on yooptx.a.b
                if t and t != name and t != 'yooptx': deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "One import circle as a path [a, b, ..., a], or None."
    state, stack = {}, []
    def visit(u):
        state[u] = 1; stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1: return stack[stack.index(v):] + [v]
            if not state.get(v):
                c = visit(v)
                if c: return c
        state[u] = 2; stack.pop()
        return None
    for u in sorted(graph):
        if not state.get(u):
            c = visit(u)
            if c: return c
    return None


def test_no_import_cycles():
    g = import_graph()
    assert 'yooptx.training.driver' in g and 'yooptx.experiments.bakeoff' in g['yooptx.reporting.trainviews']   # it sees local imports
    assert find_cycle(g) is None, ' -> '.join(find_cycle(g))


def test_cycle_finder_has_power():
    g = import_graph()
    g['yooptx.runs'] = g['yooptx.runs'] | {'yooptx.experiments.bakeoff'}    # a back-edge from the lifecycle to a wing
    assert find_cycle(g) is not None


def test_wings_and_no_back_edges():
    g = import_graph()
    top = {m for m in g if m.count('.') == 1 and m.split('.')[1] not in {'models', 'training', 'experiments', 'reporting', 'rl'}}
    # the data path at the top does not reach up into the wings (the CLI, shims and trial-type registry excepted)
    allowed = {'yooptx.cli', 'yooptx._compat'} | {f'yooptx.{s}' for s in SHIMS}
    for m in top - allowed:
        up = [d for d in g[m] if d.split('.')[1] in {'models', 'training', 'experiments', 'reporting', 'rl'}]
        assert not up, f"{m} imports the wing module(s) {up}"
    assert not any(d.startswith('yooptx.experiments') or d.startswith('yooptx.reporting') for m in g if m.startswith('yooptx.training') for d in g[m])
    assert not any(d.startswith('yooptx.reporting') for m in g if m.startswith('yooptx.experiments') for d in g[m])
    # agents build on training (checkpoints) and are run by experiments and shown by reporting, never the other way
    assert not any(d.startswith('yooptx.rl') for m in g if m.startswith(('yooptx.training', 'yooptx.models')) for d in g[m])
    assert not any(d.startswith(('yooptx.experiments', 'yooptx.reporting')) for m in g if m.startswith('yooptx.rl') for d in g[m])


def test_old_paths_warn_once_and_forward():
    code = ("import importlib, warnings; warnings.simplefilter('always')\n"
            f"for old in {sorted(SHIMS)!r}:\n"
            "    with warnings.catch_warnings(record=True) as w:\n"
            "        m = importlib.import_module('yooptx.' + old); importlib.import_module('yooptx.' + old)\n"
            "    print(old, len([x for x in w if issubclass(x.category, FutureWarning)]), bool([n for n in dir(m) if not n.startswith('_')]))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == [f"{s} 1 True" for s in sorted(SHIMS)], r.stdout


def test_old_train_path_reaches_every_piece():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        from yooptx.train import fit, load, SequenceModel, trading_scores, CheckpointError
        from yooptx.bakeoff import bakeoff, seed_average, select_per_fold
    from yooptx.training.driver import fit as f2
    from yooptx.backtest import seed_average as s2
    assert fit is f2 and seed_average is s2
    import yooptx.train as t
    with pytest.raises(AttributeError, match="moved to"): t.no_such_thing


@pytest.mark.parametrize('override,needle', [
    ('labels.horizons=[1,5]', 'they need labels.kind forward_return (now direction)'),
    ('encoders.gpt={}', "unknown encoder 'gpt'; known encoders: manual"),
])
def test_bakeoff_refuses_at_plan_time_writing_nothing(home, override, needle):
    before = tree(home)
    rc, out, err = run_cli('bakeoff', 'demo', '--set', override, '--quiet')
    assert rc == 2, (rc, err)
    assert needle in err and 'Traceback' not in err, err
    assert tree(home) == before and not (home / 'runs').exists()


def test_plan_refuses_unknown_grid_keys_and_baselines():
    from yooptx.config import load_config
    from yooptx.core import UserError
    from yooptx.experiments.bakeoff import plan_trials
    with pytest.raises(UserError, match="unknown param 'hiden'"): plan_trials(load_config('demo', ['encoders.lstm.grid.hiden=[16,32]']), [0])
    with pytest.raises(UserError, match="unknown baseline 'oracle'; known baselines: buy_hold"):
        plan_trials(load_config('demo', ['baselines=[buy_hold,oracle]']), [0])


def test_every_notebook_names_its_kernel_and_lab_opens_on_the_front_page():
    "JupyterLab asks for a kernel on every open of a notebook without a kernelspec; `make lab` starts at the root on nbs/index.ipynb."
    import json
    nbs = [p for p in [*REPO.glob('nbs/**/*.ipynb'), *REPO.glob('reports/*.ipynb')] if '.ipynb_checkpoints' not in str(p) and 'mlruns' not in str(p)]
    missing = [str(p.relative_to(REPO)) for p in nbs if json.loads(p.read_text()).get('metadata', {}).get('kernelspec', {}).get('name') != 'python3']
    assert len(nbs) > 40 and not missing, missing
    lab = next(l for l in (REPO / 'Makefile').read_text().splitlines() if 'jupyter lab' in l)
    assert '--ServerApp.root_dir=.' in lab and 'nbs/index.ipynb' in lab
    assert 'readme_nb = index.ipynb' in (REPO / 'settings.ini').read_text() and (REPO / 'nbs' / 'index.ipynb').exists()


def test_the_tour_notebooks_carry_their_outputs_and_the_library_notebooks_none():
    "A reader sees the front page's and the backtest tour's results before running anything; library notebooks stay output-free."
    import json
    tours = {'nbs/index.ipynb', 'nbs/44_backtest_tour.ipynb'}
    for p in REPO.glob('nbs/**/*.ipynb'):
        if '.ipynb_checkpoints' in str(p) or 'mlruns' in str(p): continue
        outs = [o for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])]
        rel = str(p.relative_to(REPO))
        if rel in tours:
            assert any('application/vnd.plotly.v1+json' in o.get('data', {}) for o in outs), f"{rel}: committed without its figures"
            assert not [o for o in outs if o.get('output_type') == 'error'], f"{rel}: an error output is committed"
        else:
            assert not outs, f"{rel}: a library notebook committed with outputs (nbdev_clean and re-run nbdev_export)"
