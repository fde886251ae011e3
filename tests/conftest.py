"""Shared fixtures: every test points $YOOPTX_HOME at a scratch folder so nothing touches the repo's data/."""
import os, subprocess, sys
from pathlib import Path
import pytest
from hypothesis import settings

# CI runs the property tests on a fixed example sequence, so a red build always reproduces; locally they explore.
settings.register_profile('ci', derandomize=True, print_blob=True)
if os.environ.get('CI'): settings.load_profile('ci')

REPO = Path(__file__).resolve().parents[1]
YOOPTX = Path(sys.executable).parent / 'yooptx'


@pytest.fixture
def home(tmp_path, monkeypatch):
    "A scratch $YOOPTX_HOME for the test (and for CLI subprocesses it starts)."
    h = tmp_path / 'home'
    h.mkdir()
    monkeypatch.setenv('YOOPTX_HOME', str(h))
    return h


def run_cli(*args, env_extra=None, timeout=300):
    "Run the installed `yooptx` console script; return (returncode, stdout, stderr)."
    env = dict(os.environ, **(env_extra or {}))
    p = subprocess.run([str(YOOPTX), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    return p.returncode, p.stdout, p.stderr


def tree(path: Path) -> dict:
    "Every file under `path` with its size and mtime: to prove a failed command wrote nothing."
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob('*') if p.is_file()} if path.exists() else {}
