"""The report runner (`yooptx.reports`, `yooptx run`): papermill execution into a run folder with declared,
typed parameters; bad input refused; a failing cell saved and reported; self-contained HTML checked by parsing it
and by loading it in headless Chromium; the Quarto path through a fake `quarto`; run and site indexes."""
import json, os, re, shutil, subprocess, sys, zlib, struct
from pathlib import Path
import nbformat
import pytest
from bs4 import BeautifulSoup
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from conftest import REPO, run_cli
from yooptx.reporting import runner as R
from yooptx.core import UserError

CHROMIUM = shutil.which('chromium') or ('/usr/bin/chromium' if Path('/usr/bin/chromium').exists() else None)
KERNELSPEC = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}


def write_nb(path: Path, cells: list, params: str) -> Path:
    nb = new_notebook(metadata={'kernelspec': KERNELSPEC})
    nb.cells = [new_markdown_cell(f'# {path.stem}'), new_code_cell(params, metadata={'tags': ['parameters']}), *cells]
    nbformat.write(nb, str(path))
    return path


PARAMS = "run_dir: str = ''\nn: int = 3\nscale = 1.5\nflag: bool = False\nlabel: str = 'x'"
BODY = [new_code_cell("import plotly.graph_objects as go, polars as pl\n"
                      "go.Figure(go.Scatter(y=[i * scale for i in range(n)]), layout_title_text=f'tiny {label} n={n}',\n"
                      "          layout_xaxis_title='bar', layout_yaxis_title='value (units)').show()"),
        new_code_cell("pl.DataFrame({'i': list(range(n)), 'flag': [flag] * n})"),
        new_code_cell("from yooptx.views import setup_notebook\nsetup_notebook()   # the run notebooks' renderer: plotly.js + HTML figures\n"
                      "go.Figure(go.Bar(x=['a', 'b'], y=[n, 1]), layout_title_text='second figure').show()")]


@pytest.fixture
def reports(tmp_path, monkeypatch, home):
    "A reports folder with a tiny working notebook, a failing one and a run-reading one; runs under $YOOPTX_HOME."
    d = tmp_path / 'reports'
    d.mkdir()
    write_nb(d / 'tiny.ipynb', BODY, PARAMS)
    write_nb(d / 'broken.ipynb', [new_code_cell("x = n + 1\nraise ValueError(f'broken on purpose with n={n}')")], "run_dir: str = ''\nn: int = 3")
    write_nb(d / 'train.ipynb', [new_code_cell("from pathlib import Path\nPath(run_dir).mkdir(parents=True, exist_ok=True)\n"
                                               "(Path(run_dir) / 'made_by_train.txt').write_text(str(epochs))")],
             "run_dir: str = ''\nepochs: int = 1")
    monkeypatch.setenv('YOOPTX_REPORTS', str(d))
    return d


# --- bad input (no kernel needed) -------------------------------------------------------------------------------

def test_unknown_notebook_lists_known_ones(reports):
    with pytest.raises(UserError, match=r"unknown report notebook 'tiyn'; known notebooks: broken, tiny, train"):
        R.execute('tiyn', {})
    rc, out, err = run_cli('run', 'tiyn')
    assert rc == 2 and 'known notebooks: broken, tiny, train' in err and 'Traceback' not in err, err


def test_undeclared_parameter_is_refused(reports, home):
    with pytest.raises(UserError) as e:
        R.execute('tiny', {'nn': '4', 'n': '4'}, run_dir=home)
    msg = str(e.value)
    assert "does not declare parameter(s) 'nn'" in msg
    for k in ('run_dir (str', 'n (int, default 3)', 'scale (float, default 1.5)', 'flag (bool', 'label (str'): assert k in msg, msg
    assert not (home / 'notebooks').exists()                            # refused before anything was written


def test_cli_strings_are_cast_to_declared_types(reports):
    got = R.check_parameters('tiny', {'n': '7', 'scale': '2', 'flag': 'false', 'label': '12'})
    assert got == {'n': 7, 'scale': 2.0, 'flag': False, 'label': '12'}
    assert type(got['scale']) is float and type(got['n']) is int
    assert R.check_parameters('tiny', {'n': 5})['n'] == 5             # Python values pass unchanged
    for k, v in (('n', '1.5'), ('n', 'seven'), ('flag', 'maybe'), ('scale', 'x')):
        with pytest.raises(UserError, match=f"parameter '{k}' of tiny.ipynb is declared"): R.check_parameters('tiny', {k: v})


def test_run_folder_must_exist_for_run_notebooks(reports, home, tmp_path):
    with pytest.raises(UserError, match='run folder .*nope does not exist'):
        R.execute('tiny', {}, run_dir=tmp_path / 'nope')
    with pytest.raises(UserError, match='no finished run under'):     # no --run and no finished run yet
        R.latest_run(home / 'runs')
    rc, out, err = run_cli('run', 'tiny', '--run', tmp_path / 'nope')
    assert rc == 2 and 'does not exist' in err, err
    rc, out, err = run_cli('run', 'tiny', '--run', tmp_path / 'a', '-p', 'run_dir', tmp_path / 'b')
    assert rc == 2 and 'two run folders given' in err, err


def test_latest_run_picks_the_newest_finished_run(tmp_path):
    for i, name in enumerate(['20260101-000000-aaaaaa', '20260102-000000-bbbbbb', '20260103-000000-cccccc']):
        (tmp_path / name).mkdir()
        if i < 2:
            (tmp_path / name / 'selection.json').write_text('{}')
            os.utime(tmp_path / name / 'selection.json', (1e9 + i, 1e9 + i))
    assert R.latest_run(tmp_path).name == '20260102-000000-bbbbbb'   # the newest one is unfinished (no selection.json)


def test_reports_folder_missing_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv('YOOPTX_REPORTS', str(tmp_path / 'absent'))
    with pytest.raises(UserError, match='ship with the yooptx repository'): R.notebooks()


# --- execution, failing cells, the CLI --------------------------------------------------------------------------

def test_failing_cell_exits_1_saves_the_notebook_and_says_where(reports, home):
    run = home / 'runs' / 'r-fail'
    run.mkdir(parents=True)
    rc, out, err = run_cli('run', 'broken', '-p', 'n', '41', '--run', run)
    saved = run / 'notebooks' / 'broken.ipynb'
    assert rc == 1, (rc, out, err)
    assert 'report broken failed in cell' in err and 'ValueError: broken on purpose with n=41' in err, err
    assert f"saved at {saved}" in err and 'internal error' not in err and 'Traceback' not in err, err
    nb = nbformat.read(str(saved), 4)
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if o.output_type == 'error']
    assert len(errors) == 1 and errors[0].evalue == 'broken on purpose with n=41'
    assert not (run / 'html').exists()                                 # nothing rendered from a failed run


def test_cli_run_end_to_end(reports, home):
    run = home / 'runs' / '20260101-000000-abcdef'
    run.mkdir(parents=True)
    (run / 'manifest.json').write_text(json.dumps({'run_id': run.name, 'started': '2026-01-01T00:00:00+00:00',
                                                   'data': {'name': 'synthetic', 'freq': '1D'}, 'git': {'commit': 'abc123'}}))
    (run / 'verdict.json').write_text(json.dumps({'verdict': 'GO', 'candidate': 'transformer', 'sentence': 'GO: transformer beats momentum.'}))
    rc, out, err = run_cli('run', 'tiny', '-p', 'n', '5', '-p', 'label', 'cli', '--run', run, '--quiet')
    assert rc == 0, err
    html = run / 'html' / 'tiny.html'
    assert out.strip().splitlines()[-1] == str(html)                  # the last line is the report
    nb = nbformat.read(str(run / 'notebooks' / 'tiny.ipynb'), 4)
    fig = next(o for c in nb.cells for o in c.get('outputs', []) if R.PLOTLY_MIME in o.get('data', {}))
    assert fig.data[R.PLOTLY_MIME]['layout']['title']['text'] == 'tiny cli n=5'   # the cast values reached the kernel
    assert fig.data[R.PLOTLY_MIME]['data'][0]['y'] == [0.0, 1.5, 3.0, 4.5, 6.0]
    idx = BeautifulSoup((run / 'html' / 'index.html').read_text(), 'html.parser')
    assert idx.select_one('.badge.go').text == 'GO' and 'GO: transformer beats momentum.' in idx.text and 'transformer' in idx.text
    assert [a['href'] for a in idx.select('li > a')] == ['tiny.html']
    site = home / '_site' / 'index.html'
    s = BeautifulSoup(site.read_text(), 'html.parser')
    hrefs = [a['href'] for a in s.select('td a')]
    assert 'runs/20260101-000000-abcdef/html/tiny.html' in ' '.join(hrefs)
    for h in hrefs: assert (site.parent / h).resolve().exists(), h    # relative links resolve
    rc, out, err = run_cli('run', 'tiny', '--run', run, '--no-render', '--quiet')
    assert rc == 0 and out.strip().splitlines()[-1] == str(run / 'notebooks' / 'tiny.ipynb'), err


def test_train_without_run_makes_a_new_run_folder(reports, home):
    paths = R.run('train', {'epochs': '2'}, progress=False, render_html=False)
    run = paths['run_dir']
    assert run.parent == home / 'runs' and re.fullmatch(r'\d{8}-\d{6}-[0-9a-f]{6}', run.name)
    assert (run / 'made_by_train.txt').read_text() == '2'             # the notebook got that folder as run_dir
    assert paths['notebook'] == run / 'notebooks' / 'train.ipynb' and paths['notebook'].exists()


# --- rendering: nbconvert, checked by parsing and in Chromium ----------------------------------------------------

def _png_nonwhite_fraction(path: Path) -> float:
    "Fraction of non-white pixels of an 8-bit RGB(A) PNG (stdlib only: zlib + PNG filters)."
    b = path.read_bytes()
    assert b[:8] == b'\x89PNG\r\n\x1a\n'
    pos, idat, w = 8, b'', None
    while pos < len(b):
        n, typ = struct.unpack('>I4s', b[pos:pos + 8]); data = b[pos + 8:pos + 8 + n]; pos += 12 + n
        if typ == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', data[:10]); assert depth == 8 and ctype in (2, 6)
        elif typ == b'IDAT': idat += data
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, nonwhite = bytearray(stride), 0
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0; up = prev[i]; c = prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + up) & 255
            elif f == 3: line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - c; pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        nonwhite += sum(1 for x in range(0, stride, bpp) if min(line[x:x + 3]) < 240)
        prev = line
    return nonwhite / (w * h)


def chromium(page: Path, tmp: Path, *extra) -> tuple[str, str]:
    "Load `page` in headless Chromium; return (stdout, console lines from stderr)."
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', f'--user-data-dir={tmp / "chromium-profile"}',
             '--enable-logging=stderr', '--v=0', '--virtual-time-budget=5000']
    p = subprocess.run([CHROMIUM, *flags, *extra, page.as_uri()], capture_output=True, text=True, timeout=120)
    return p.stdout, '\n'.join(l for l in p.stderr.splitlines() if 'CONSOLE' in l)


@pytest.mark.skipif(CHROMIUM is None, reason='headless Chromium (/usr/bin/chromium) is not installed')
def test_chromium_check_catches_a_js_error(tmp_path):
    bad = tmp_path / 'bad.html'
    bad.write_text('<html><body><p>x</p><script>Plotly.newPlot("nope", []);</script></body></html>')
    _, console = chromium(bad, tmp_path, '--dump-dom')
    assert 'Uncaught ReferenceError: Plotly is not defined' in console  # the detector sees errors: the clean check below can fail


@pytest.mark.skipif(CHROMIUM is None, reason='headless Chromium (/usr/bin/chromium) is not installed')
def test_rendered_html_is_self_contained_and_draws(reports, home, tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', os.pathsep.join(p for p in os.environ['PATH'].split(os.pathsep) if not (Path(p) / 'quarto').exists()))
    run = home / 'runs' / 'r-html'
    run.mkdir(parents=True)
    html = R.run('tiny', {'n': '4', 'label': 'chromium'}, run_dir=run, progress=False)['html']
    text = html.read_text()
    soup = BeautifulSoup(text, 'html.parser')
    figs = soup.select('div.plotly-graph-div')
    assert len(figs) == 2                                             # both figures, as plain divs
    assert soup.select('table.dataframe') and soup.select_one('table.dataframe').find_all('td')   # the polars table
    # plotly.js once per run folder, by relative path (html/plotly.min.js): the page stays small and opens offline
    assert [t['src'] for t in soup.find_all('script', src=True)] == ['plotly.min.js'] and text.count('window.PlotlyConfig') == 1
    assert (run / 'html' / 'plotly.min.js').stat().st_size > 3e6 and len(text) < 1e6 and 'plotly.js v' not in text
    for t in soup.find_all(['script', 'link', 'img', 'iframe']):      # nothing fetched from the network
        for a in ('src', 'href'):
            assert not re.match(r'\s*(https?:)?//', t.get(a) or ''), (t.name, t.get(a))
    assert not re.search(r"""\bimport\b[^;]*\bfrom\s*['"]https?://""", text)
    assert 'require.min.js' not in text and 'mathjax' not in ' '.join(s.get('src', '') for s in soup.find_all('script')).lower()
    code = soup.select('details.yooptx-code')                         # code folded (closed) by default
    assert len(code) == 4 and all(not d.has_attr('open') for d in code) and 'go.Figure' in code[1].text
    assert [d.summary.text for d in code] == ['parameters', 'code', 'code', 'code']   # one parameters fold: defaults + this run's
    assert 'this run (papermill' in code[0].text and 'n = 4' in code[0].text
    dom, console = chromium(html, tmp_path, '--dump-dom')
    assert 'Uncaught' not in console and 'Error' not in console, console
    drawn = BeautifulSoup(dom, 'html.parser')
    assert len(drawn.select('div.plotly-graph-div svg.main-svg')) >= 2 and 'tiny chromium n=4' in drawn.text  # plotly drew both
    shot = tmp_path / 'shot.png'
    chromium(html, tmp_path, f'--screenshot={shot}', '--window-size=1280,2000')
    assert shot.exists() and _png_nonwhite_fraction(shot) > 0.02
    # --self-contained: the library inlined once into the page, a single file that draws on its own
    one = R.render(run / 'notebooks' / 'tiny.ipynb', out_dir=tmp_path / 'single', self_contained=True)
    s1 = BeautifulSoup(one.read_text(), 'html.parser')
    libs = [s for s in s1.find_all('script') if 'window.PlotlyConfig' in (s.string or '') or 'plotly.js v' in (s.string or '')[:2000]]
    assert len(libs) == 2 and not s1.find_all('script', src=True) and not (tmp_path / 'single' / 'plotly.min.js').exists()
    dom, console = chromium(one, tmp_path, '--dump-dom')
    assert 'Uncaught' not in console and len(BeautifulSoup(dom, 'html.parser').select('div.plotly-graph-div svg.main-svg')) >= 2


def test_render_rewrites_require_style_figures(tmp_path):
    """A notebook that used plotly's `notebook` renderer (require.js + its own plotly.js) renders the same way."""
    nb = new_notebook(metadata={'kernelspec': KERNELSPEC})
    payload = {'output_type': 'display_data', 'metadata': {}, 'data': {'text/html': "<script>define('plotly', function(){});</script>"}}
    offline = {'output_type': 'display_data', 'metadata': {}, 'data': {'text/html': "<script>window.PlotlyConfig = {};</script>\n"
               "<script>/**\n* plotly.js v4.1.1\n*/ var Plotly = {newPlot: function(){}}; Plotly.newPlot;</script>\n"}}
    fig = {'output_type': 'display_data', 'metadata': {}, 'data': {'text/html': '<div id="f1"></div><script>require(["plotly"], function(Plotly) {Plotly.newPlot("f1", [], {});});</script>'}}
    nb.cells = [new_code_cell('x', outputs=[nbformat.from_dict(payload), nbformat.from_dict(offline), nbformat.from_dict(fig)])]
    assert R.inline_figures(nb) == 1
    outs = nb.cells[0].outputs
    assert len(outs) == 1 and 'require(' not in outs[0].data['text/html'] and 'Plotly.newPlot("f1"' in outs[0].data['text/html']


# --- the Quarto path -------------------------------------------------------------------------------------------

FAKE_QUARTO = """#!{py}
import json, os, sys
from pathlib import Path
log = Path({log!r})
log.write_text(json.dumps({{'argv': sys.argv[1:], 'cwd': os.getcwd(), 'files': sorted(os.listdir('.')),
                           'project': Path('_quarto.yml').read_text(),
                           'header': Path('plotly-js.html').read_text()[:400] if Path('plotly-js.html').exists() else None}}))
Path(sys.argv[2]).with_suffix('.html').write_text('<html><body>rendered by fake quarto</body></html>')
"""


def test_quarto_is_used_when_on_path(tmp_path, monkeypatch):
    import yaml
    bin_ = tmp_path / 'bin'; bin_.mkdir()
    log = tmp_path / 'quarto-call.json'
    q = bin_ / 'quarto'
    q.write_text(FAKE_QUARTO.format(py=sys.executable, log=str(log)))
    q.chmod(0o755)
    monkeypatch.setenv('PATH', f"{bin_}{os.pathsep}{os.environ['PATH']}")
    run = tmp_path / 'run'
    (run / 'notebooks').mkdir(parents=True)
    nb = new_notebook(metadata={'kernelspec': KERNELSPEC})
    fig = {'output_type': 'display_data', 'metadata': {}, 'data': {R.PLOTLY_MIME: {'data': [{'y': [1, 2], 'type': 'scatter'}], 'layout': {}}}}
    nb.cells = [new_code_cell('fig', outputs=[nbformat.from_dict(fig)])]
    nbformat.write(nb, str(run / 'notebooks' / 'go_no_go.ipynb'))
    out = R.render(run / 'notebooks' / 'go_no_go.ipynb')
    assert out == run / 'html' / 'go_no_go.html' and out.read_text() == '<html><body>rendered by fake quarto</body></html>'
    call = json.loads(log.read_text())
    assert call['argv'] == ['render', 'go_no_go.ipynb', '--to', 'html']
    assert Path(call['cwd']).name.startswith('yooptx-quarto-') and not Path(call['cwd']).exists()   # scratch project, removed
    assert call['files'] == ['_quarto.yml', 'go_no_go.ipynb', 'plotly-js.html']
    project = yaml.safe_load(call['project'])
    root = yaml.safe_load((REPO / '_quarto.yml').read_text())
    assert project['project'] == {'type': 'default'} and project['execute'] == root['execute']
    html_fmt = project['format']['html']
    assert html_fmt['embed-resources'] is True and html_fmt['code-fold'] == root['format']['html']['code-fold']
    assert html_fmt['include-in-header'] == ['plotly-js.html']
    assert 'src="plotly.min.js" data-external="1"' in call['header'] and (run / 'html' / 'plotly.min.js').exists()   # kept a reference
    R.render(run / 'notebooks' / 'go_no_go.ipynb', out_dir=tmp_path / 'one', self_contained=True)
    assert 'src=' not in json.loads(log.read_text())['header'].split('</script>')[1] and not (tmp_path / 'one' / 'plotly.min.js').exists()
    # a failing quarto is reported with its output
    q.write_text(f"#!{sys.executable}\nimport sys; print('pandoc exploded', file=sys.stderr); sys.exit(3)\n")
    with pytest.raises(R.ReportFailed, match='(?s)exit code 3.*pandoc exploded'): R.render(run / 'notebooks' / 'go_no_go.ipynb')


# --- the real run notebooks (R2's), when present ------------------------------------------------------------------

def test_indexes_from_hand_made_runs(tmp_path):
    runs = tmp_path / 'runs'
    for rid, v in (('20260101-000000-aaaaaa', 'GO'), ('20260102-000000-bbbbbb', 'NO-GO'), ('20260103-000000-cccccc', None)):
        d = runs / rid; (d / 'html').mkdir(parents=True)
        (d / 'manifest.json').write_text(json.dumps({'started': f'2026-01-0{rid[7]}T00:00:00', 'data': {'name': 'btc_1d', 'freq': '1D'}}))
        if v: (d / 'verdict.json').write_text(json.dumps({'verdict': v, 'candidate': 'lstm', 'sentence': f'{v} sentence.'}))
        (d / 'html' / 'go_no_go.html').write_text('x'); (d / 'html' / 'train.html').write_text('x')
        idx = BeautifulSoup(R.write_run_index(d).read_text(), 'html.parser')
        assert [a['href'] for a in idx.select('li > a')] == ['go_no_go.html', 'train.html']   # decision document first
        assert idx.select_one('.badge').text == (v or 'unfinished')      # the words of `yooptx runs`
    site = R.write_site_index(runs)
    assert site == tmp_path / '_site' / 'index.html'
    s = BeautifulSoup(site.read_text(), 'html.parser')
    rows = s.select('tr')[1:]
    assert [r.td.text for r in rows] == ['20260103-000000-cccccc', '20260102-000000-bbbbbb', '20260101-000000-aaaaaa']  # newest first
    assert [r.select_one('.badge').text for r in rows] == ['unfinished', 'NO-GO', 'GO']
    for a in s.select('a'): assert (site.parent / a['href']).exists(), a['href']


@pytest.mark.skipif(not (REPO / 'reports' / 'go_no_go.ipynb').exists(), reason="reports/go_no_go.ipynb (R2's) not written yet")
def test_cli_go_no_go_on_a_tiny_run(home, tmp_path):
    from yooptx.experiments.bakeoff import bakeoff
    from yooptx.config import load_config
    from yooptx.experiment import prepare
    from yooptx.gate import evaluate
    from yooptx.synth import planted_signal
    cfg = load_config({'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 2, 'window': 16, 'batch_size': 256}}},
                       'baselines': ['buy_hold', 'momentum'], 'seeds': [0], 'splits': {'n_folds': 3}, 'budget': {'max_epochs': 1}})
    data = prepare(cfg, bars=planted_signal(500, n_symbols=1, seed=5, sharpe=3.0), calendar='XNYS')
    run = bakeoff(cfg, data=data, run_dir=tmp_path / 'run', progress=False)
    evaluate(run)
    rc, out, err = run_cli('run', 'go_no_go', '--run', run, '--quiet', timeout=600)
    assert rc == 0, err
    html = run / 'html' / 'go_no_go.html'
    assert out.strip().splitlines()[-1] == str(html)
    assert 'all runs' not in out and not (tmp_path.parent / '_site').exists()   # a run outside runs_dir(): no site index beside it
    soup = BeautifulSoup(html.read_text(), 'html.parser')
    v = json.loads((run / 'verdict.json').read_text())
    assert v['verdict'] in soup.text and soup.find('table')
    for t in soup.find_all(['script', 'link']):
        for a in ('src', 'href'): assert not re.match(r'\s*(https?:)?//', t.get(a) or ''), t.get(a)


def test_declared_parameters_agree_with_papermill(reports):
    from papermill import inspect_notebook
    ref = inspect_notebook(str(reports / 'tiny.ipynb'))
    assert R.declared_parameters('tiny') == {k: dict(v) for k, v in ref.items()}
