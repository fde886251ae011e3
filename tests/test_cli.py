"""The `yooptx` command as a user runs it: real samples listed and checked, and every kind of bad input
refused with one clear message, exit code 2, no traceback and nothing written to the catalog."""
import json, re, shutil, zipfile
from pathlib import Path
import polars as pl
import pytest
from conftest import REPO, run_cli, tree

SAMPLES = json.loads((REPO / 'data/samples/MANIFEST.json').read_text())['datasets']


def test_data_list_shows_real_datasets(home):
    rc, out, err = run_cli('data', 'list', '--json')
    assert rc == 0, err
    rows = json.loads(out)
    assert len(rows) >= 8
    by = {r['name']: r for r in rows}
    for d in SAMPLES:
        r = by[d['name']]
        assert (r['rows'], r['start'], r['end'], r['license']) == (d['rows'], d['start'], d['end'], d['license'])
    assert (by['stocks_1d']['adj_close'], by['btc_1d']['adj_close']) == (True, False)   # whether a set has an adjusted close
    rc, out, _ = run_cli('data', 'list')
    assert rc == 0 and 'btc_15m' in out and f"{len(SAMPLES)} data set(s)" in out
    assert next(l for l in out.splitlines() if l.startswith('stocks_1d ')).endswith('adj close')


def test_data_check_every_sample(home):
    rc, out, err = run_cli('data', 'check', '--all', '--json')
    assert rc == 0, err
    reports = {r['name']: r for r in json.loads(out)}
    assert set(reports) == {d['name'] for d in SAMPLES}
    # honest reports: the real gaps and oddities of the bundled data are reported, not hidden
    f = {n: {x['check']: x for x in r['findings']} for n, r in reports.items()}
    assert f['btc_15m']['gaps']['count'] >= 222          # the 2021-11-27..29 hole in the source
    assert f['btc_15m']['off_grid']['count'] == 3         # three snapshot rows off the 15-minute grid
    assert f['spx_ffill_1d']['outside_session']['count'] == 566  # forward-filled weekend/holiday rows
    assert f['es_1m']['gaps']['count'] > 0
    assert 'outside_session' not in f['eurusd_1h']              # FX sessions: Sunday 17:00 New York opens Monday's
    assert f['eurusd_1h']['gaps']['count'] == 15                # ... and Christmas 2017 is the only hole
    assert all(r['ok'] for r in reports.values())          # no bundled set breaks the bars contract
    # the VIX's 2016-06-24 spike is a large move of an index, never advice to split-adjust it
    assert 'probable_split' not in f['vix_1d'] and f['vix_1d']['large_move']['severity'] == 'info'
    assert 'VIX @ 2016-06-24' in f['vix_1d']['large_move']['examples'][0]
    assert '31.0%' in f['spx_ffill_1d']['outside_session']['detail'] and '24/7 fits better' in f['spx_ffill_1d']['outside_session']['detail']


def _ingest(path, name='mine', *extra):
    return run_cli('data', 'ingest', path, '--name', name, *extra)


def _good_csv(path: Path, n=5, **over):
    d = {'Date': [f'2021-01-{i + 4:02d}' for i in range(n)], 'Open': [1.0] * n, 'High': [2.0] * n, 'Low': [0.5] * n,
         'Close': [1.5] * n, 'Volume': [10.0] * n}
    d.update(over)
    pl.DataFrame(d).write_csv(path)
    return path


def test_ingest_then_use(home, tmp_path):
    rc, out, err = _ingest(_good_csv(tmp_path / 'abc.csv'), 'abc_daily', '--calendar', 'XNYS')
    assert rc == 0, err
    assert 'ingested abc_daily: 5 1D bars' in out
    rc, out, err = run_cli('data', 'check', 'abc_daily')
    assert rc == 0 and 'abc_daily: 5 bars of 1D' in out
    rc, out, err = run_cli('data', 'list', '--json')
    assert any(r['name'] == 'abc_daily' and r['kind'] == 'ingested' for r in json.loads(out))


def _write(p: Path, data: bytes):
    p.write_bytes(data)
    return p


def _bomb(p: Path):
    with zipfile.ZipFile(p, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('big.csv', b'0' * 20_000_000)
    return p


def _traversal(p: Path, member='../evil.csv'):
    with zipfile.ZipFile(p, 'w') as z:
        z.writestr(member, 'Date,Close\n2021-01-04,1\n')
    return p


def _encrypted(p: Path):
    """A zip whose member says it is encrypted (flag bit 0 set in both headers)."""
    with zipfile.ZipFile(p, 'w') as z:
        z.writestr('a.csv', 'Date,Open,High,Low,Close,Volume\n2021-01-04,1,2,0.5,1.5,10\n')
    b = bytearray(p.read_bytes())
    for sig, off in ((b'PK\x03\x04', 6), (b'PK\x01\x02', 8)):
        i = b.find(sig); b[i + off] |= 1
    p.write_bytes(bytes(b))
    return p


def _gz_bomb(p: Path):
    import gzip
    p.write_bytes(gzip.compress(b'Date,Close\n' + b'0' * 30_000_000, 9))
    return p


def _gz_bomb_in_zip(p: Path, t: Path):
    with zipfile.ZipFile(p, 'w') as z:
        z.write(_gz_bomb(t / 'inner.csv.gz'), 'inner.csv.gz')
    return p


def _corrupt(p: Path, tmp):
    with zipfile.ZipFile(p, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('a.csv', 'Date,Open,High,Low,Close,Volume\n' + ''.join(f'2021-01-04,1,2,0.5,{i * 7919 % 1000},10\n' for i in range(3000)))
    b = bytearray(p.read_bytes())
    for i in range(60, len(b) // 2): b[i] ^= 0xFF          # damage the compressed stream
    p.write_bytes(bytes(b))
    return p


BAD_INGEST = {
    'corrupt zip': (lambda t: _corrupt(t / 'c.zip', t), [], ['corrupt', 'zip']),
    'not a zip at all': (lambda t: _write(t / 'n.zip', b'hello'), [], ['not a readable zip']),
    'zip with ../ member': (lambda t: _traversal(t / 't.zip'), [], ['path traversal', '../evil.csv']),
    'zip with absolute path': (lambda t: _traversal(t / 'a.zip', '/etc/evil.csv'), [], ['path traversal', '/etc/evil.csv']),
    'zip bomb': (lambda t: _bomb(t / 'b.zip'), [], ['zip bomb']),
    'sha256 mismatch': (lambda t: _good_csv(t / 'g.csv'), ['--sha256', '0' * 64], ['SHA-256 mismatch']),
    'missing column': (lambda t: (pl.read_csv(_good_csv(t / 'm.csv')).drop('High').write_csv(t / 'm.csv'), t / 'm.csv')[1], [],
                       ['missing required column(s) high', 'columns found: Date, Open, Low, Close, Volume']),
    'unparseable timestamps': (lambda t: _good_csv(t / 'u.csv', Date=['soon'] * 5), [], ['could not parse timestamps', 'soon']),
    'duplicate bars': (lambda t: _good_csv(t / 'd.csv', Date=['2021-01-04', '2021-01-05', '2021-01-05', '2021-01-06', '2021-01-07']), [],
                       ['share a (symbol, timestamp)']),
    'NaN price': (lambda t: _good_csv(t / 'x.csv', Close=[1.5, float('nan'), 1.5, 1.5, 1.5]), [], ["NaN/inf/missing value(s) in 'close'"]),
    'inf price': (lambda t: _good_csv(t / 'i.csv', Open=[1.0, float('inf'), 1.0, 1.0, 1.0]), [], ["NaN/inf/missing value(s) in 'open'"]),
    'high < low': (lambda t: _good_csv(t / 'h.csv', High=[2.0, 0.1, 2.0, 2.0, 2.0]), [], ['high < low']),
    'close <= 0': (lambda t: _good_csv(t / 'c0.csv', Close=[1.5, 0.0, 1.5, 1.5, 1.5]), [],
                   ['1 bar(s) with prices <= 0, first: C0 @ 2021-01-05', 'close 0.0', '--drop-invalid']),
    'OHLC all zero': (lambda t: _good_csv(t / 'z0.csv', Open=[1.0, 0.0, 1.0, 1.0, 1.0], High=[2.0, 0.0, 2.0, 2.0, 2.0],
                                          Low=[0.5, 0.0, 0.5, 0.5, 0.5], Close=[1.5, 0.0, 1.5, 1.5, 1.5]), [], ['prices <= 0', '2021-01-05']),
    'close above high': (lambda t: _good_csv(t / 'ch.csv', Close=[1.5, 1.5, 3.0, 1.5, 1.5]), [],
                         ['1 bar(s) with open or close outside [low, high], first:', '2021-01-06', '--drop-invalid']),
    'negative volume': (lambda t: _good_csv(t / 'nv.csv', Volume=[10.0, -2.0, 10.0, 10.0, 10.0]), [],
                        ['NaN, inf or negative volume', '2021-01-05', '--drop-invalid']),
    'a huge single line': (lambda t: _write(t / 'wide.csv', b'0,' * 600_000), [], ['line 1 is longer than 1,048,576 bytes']),
    'thousands of columns': (lambda t: _write(t / 'cols.csv', b','.join(b'c%d' % i for i in range(2000)) + b'\n' + b'1,' * 1999 + b'1\n'), [],
                             ['the header has 2,000 columns (the limit is 1,000)']),
    'malformed sha256': (lambda t: _good_csv(t / 'g.csv'), ['--sha256', 'zz'], ["--sha256 'zz' is malformed: a SHA-256 is 64 hexadecimal digits"]),
    'unsupported file type': (lambda t: _write(t / 'x.xlsx', b'PK'), [], ['unsupported file type']),
    'bad name': (lambda t: _good_csv(t / 'ok.csv'), ['--name', 'Bad Name!'], ['is not allowed']),
    'encrypted zip': (lambda t: _encrypted(t / 'e.zip'), [], ['cannot be read', 'without a password']),
    'gzip bomb': (lambda t: _gz_bomb(t / 'g.csv.gz'), [], ['decompression bomb']),
    'gzip bomb inside a zip': (lambda t: _gz_bomb_in_zip(t / 'gz.zip', t), [], ['decompression bomb']),
    'ambiguous day/month': (lambda t: _good_csv(t / 'amb.csv', Date=[f'01/{i + 4:02d}/2021' for i in range(5)]), [],
                            ['read both month-first and day-first', '--date-format']),
    'weekly bars': (lambda t: _good_csv(t / 'w.csv', Date=[f'2021-01-{i:02d}' for i in (4, 11, 18, 25)] + ['2021-02-01']), [],
                    ['weekly or monthly bars are not supported']),
    'freq disagrees with data': (lambda t: _good_csv(t / 'f.csv'), ['--freq', '1h'], ['freq 1h given, but the bars are spaced 1D apart']),
    'unknown time zone': (lambda t: _good_csv(t / 'z.csv'), ['--tz', 'Not/AZone'], ["unknown time zone 'Not/AZone'"]),
    'unknown calendar': (lambda t: _good_csv(t / 'k.csv'), ['--calendar', 'MOON'], ["unknown exchange calendar 'MOON'"]),
    'symbol given twice': (lambda t: (pl.read_csv(_good_csv(t / 's.csv')).with_columns(Ticker=pl.lit('A')).write_csv(t / 's.csv'), t / 's.csv')[1],
                           ['--symbol', 'B'], ['has a symbol column already']),
    'sample name is read-only': (lambda t: _good_csv(t / 'ok.csv'), ['--name', 'btc_1d'], ['read-only']),
    'calendar does not fit the bars': (lambda t: _good_csv(t / 'btc.csv', Date=[f'2021-01-{d:02d}' for d in (8, 9, 10, 11, 12)]),
                                       ['--calendar', 'XNYS'],
                                       ['2 of 5 bars (40.0%) fall outside the sessions of calendar XNYS', 'more than the 2% allowed',
                                        'e.g. 2021-01-09 Sat, 2021-01-10 Sun', 'the bars fit 24/7 (0 outside): ingest with --calendar 24/7']),
    'no ticker in the file name': (lambda t: _good_csv(t / '2021-01.csv'), [],
                                   ["cannot tell the symbol from the file name '2021-01.csv'", '--symbol']),
    'adjusted close not numeric': (lambda t: _good_csv(t / 'a.csv', **{'Adj Close': ['n/a'] * 5}), [],
                                   ['the adjusted close column holds non-numbers', 'drop the adjusted close column']),
}


@pytest.mark.parametrize('case', list(BAD_INGEST))
def test_bad_ingest_exits_2_and_writes_nothing(case, home, tmp_path):
    make, extra, needles = BAD_INGEST[case]
    src = make(tmp_path)
    before = tree(home)
    rc, out, err = run_cli('data', 'ingest', src, '--name', 'mine', *extra)
    assert rc == 2, (rc, out, err)
    assert err.startswith('yooptx: error: ') and 'Traceback' not in err and err.count('\n') == 1, err
    for n in needles: assert n in err, (n, err)
    assert tree(home) == before                             # nothing written to the catalog


SUGGEST_DROP = ['duplicate bars', 'NaN price', 'inf price', 'high < low', 'close <= 0', 'close above high', 'negative volume']


@pytest.mark.parametrize('case', SUGGEST_DROP)
def test_every_bad_row_kind_ingest_refuses_is_dropped_by_the_flag_it_suggests(case, home, tmp_path):
    src = BAD_INGEST[case][0](tmp_path)
    rc, out, err = run_cli('data', 'ingest', src, '--name', 'mine')
    assert rc == 2 and '--drop-invalid' in err, err
    rc, out, err = run_cli('data', 'ingest', src, '--name', 'mine', '--drop-invalid')
    assert rc == 0, err
    assert re.search(r'dropped \d+ invalid row\(s\): \d+ ', out + err), out + err
    rc, out, err = run_cli('data', 'check', 'mine')
    assert rc == 0 and 'mine: 4 bars of 1D' in out, (out, err)   # the one bad row of the 5 dropped


def test_sha256_mismatch_against_manifest(home, tmp_path):
    samples = tmp_path / 'samples'
    shutil.copytree(REPO / 'data/samples', samples)
    with open(samples / 'btc_1d.parquet', 'ab') as f: f.write(b'\0')
    rc, out, err = run_cli('data', 'check', 'btc_1d', env_extra={'YOOPTX_SAMPLES': str(samples)})
    assert rc == 2 and 'SHA-256 mismatch' in err and 'btc_1d' in err, err


@pytest.mark.parametrize('args,needles', [
    (['data', 'check', 'no_such'], ['unknown data set', 'known data sets: ', 'btc_15m']),
    (['data', 'resample', 'btc_1d', '--to', '2h'], ["unknown resample target '2h'", 'known bar sizes']),
    (['data', 'resample', 'btc_1h', '--to', '15m'], ['cannot resample 1h bars to 15m', 'finer than the source']),
    (['demo', '--set', 'data.nme=x'], ["unknown key 'data.nme'", 'allowed keys in data: name, symbols, start, end, freq']),
    (['demo', '--set', 'splits.mode=sliding'], ["allowed values: 'expanding', 'rolling'"]),
    (['demo', '--set', 'data.start=2021-02-30'], ['day is out of range']),
    (['demo', '--set', 'seeds=[0,'], ['not valid YAML']),
    (['demo', '--config', '/tmp'], ['is a folder']),
    (['demo', '--config', '/bin/sh'], ['cannot read it as a YAML text file']),
])
def test_bad_usage_exits_2(home, args, needles):
    rc, out, err = run_cli(*args)
    assert rc == 2, (rc, out, err)
    assert 'Traceback' not in err
    for n in needles: assert n in err, (n, err)


def test_argparse_usage_error_is_2(home):
    rc, out, err = run_cli('data', 'frobnicate')
    assert rc == 2 and 'usage:' in err


def test_debug_shows_traceback(home):
    rc, out, err = run_cli('--debug', 'data', 'check', 'no_such')
    assert rc == 2 and 'Traceback' in err


def test_resample_out_stores_dataset(home):
    rc, out, err = run_cli('data', 'resample', 'es_1m', '--to', '30m', '--out', 'es_30m')
    assert rc == 0, err
    rc, out, err = run_cli('data', 'list', '--json')
    e = {r['name']: r for r in json.loads(out)}['es_30m']
    assert e['freq'] == '30m' and e['kind'] == 'ingested' and e['calendar'] == 'CMES'


def test_ingest_real_world_layouts(home, tmp_path):
    """Layouts users bring: US dates with --date-format, semicolon CSV, Date+Time columns, UTC offsets,
    YYYYMMDD integers, a zip with notes beside the data, daily data recorded in Tokyo."""
    cases = {
        'us.csv': ('Date,Open,High,Low,Close,Volume\n' + ''.join(f'01/{d:02d}/2021,1,2,0.5,1.5,10\n' for d in (4, 5, 6)), ['--date-format', '%m/%d/%Y']),
        'semi.csv': ('Date;Open;High;Low;Close;Volume\n' + ''.join(f'2021-01-{d:02d};1;2;0.5;1.5;10\n' for d in (4, 5, 6)), []),
        'dt.csv': ('Date,Time,Open,High,Low,Close,Volume\n' + ''.join(f'2021-01-04,14:{m:02d},1,2,0.5,1.5,10\n' for m in (30, 31, 32)), []),
        'off.csv': ('timestamp,open,high,low,close,volume\n' + ''.join(f'2021-10-01 10:{m:02d}:00+01:00,1,2,0.5,1.5,10\n' for m in range(3)), []),
        'ymd.csv': ('date,open,high,low,close,volume\n' + ''.join(f'202110{d:02d},1,2,0.5,1.5,10\n' for d in (4, 5, 6)), []),
        'tokyo.csv': ('Date,Open,High,Low,Close,Volume\n' + ''.join(f'2021-10-{d:02d},1,2,0.5,1.5,10\n' for d in (4, 5, 6)), ['--tz', 'Asia/Tokyo', '--calendar', 'XTKS']),
    }
    want_first = {'us': '2021-01-04T00:00:00+00:00', 'semi': '2021-01-04T00:00:00+00:00', 'dt': '2021-01-04T14:30:00+00:00',
                  'off': '2021-10-01T09:00:00+00:00', 'ymd': '2021-10-04T00:00:00+00:00', 'tokyo': '2021-10-04T00:00:00+00:00'}
    for fname, (text, extra) in cases.items():
        (tmp_path / fname).write_text(text)
        name = fname.split('.')[0]
        rc, out, err = run_cli('data', 'ingest', tmp_path / fname, '--name', name, *extra)
        assert rc == 0, (fname, err)
        rc, out, err = run_cli('data', 'list', '--json')
        e = {r['name']: r for r in json.loads(out)}[name]
        assert (e['start'], e['rows']) == (want_first[name], 3), (fname, e)
    rc, out, err = run_cli('data', 'check', 'tokyo', '--json')
    checks = {f['check'] for f in json.loads(out)[0]['findings']}
    assert rc == 0 and not checks & {'gaps', 'outside_session'}   # Tokyo's daily bars sit on XTKS sessions, no gaps
    z = tmp_path / 'pack.zip'
    with zipfile.ZipFile(z, 'w') as zf:
        zf.writestr('folder/sub/aaa.csv', cases['semi.csv'][0])
        zf.writestr('folder/notes.txt', 'these are notes, not bars')
    rc, out, err = run_cli('data', 'ingest', z, '--name', 'pack')
    assert rc == 0 and "3 1D bars, 1 symbol(s)" in out, err


def test_failed_manifest_write_keeps_previous_dataset(home, tmp_path, monkeypatch):
    from yooptx import data as D
    cat = D.DataCatalog()
    cat.ingest(_good_csv(tmp_path / 'a.csv'), 'a', calendar='XNYS')
    before = cat.load('a')
    def boom(*a, **k): raise OSError('disk full')
    with monkeypatch.context() as m:
        m.setattr(D, 'atomic_write', boom)
        with pytest.raises(OSError, match='disk full'):
            cat.ingest(_good_csv(tmp_path / 'b.csv', n=3), 'a', calendar='XNYS', overwrite=True)
    assert D.DataCatalog().load('a').equals(before)
    assert sorted(p.name for p in (home / 'catalog').glob('*.parquet')) == [Path(D.DataCatalog().info('a')['path']).name]


def test_ingest_says_which_symbol_and_records_the_adjusted_close(home, tmp_path):
    f = _good_csv(tmp_path / 'ORCL-1995-2014.csv', **{'Adj Close': [1.2] * 5})
    rc, out, err = _ingest(f, 'orcl', '--calendar', 'XNYS')
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[1] == '  symbol: ORCL (from the file name; pass --symbol to choose)'
    assert lines[2] == '  adjusted close: stored for ORCL; prices load raw unless adjusted ones are asked for (data.adjust)'
    rc, out, err = _ingest(_good_csv(tmp_path / 'us.csv'), 'spy', '--calendar', 'XNYS')   # the review's us.csv --name spy
    assert rc == 0, err
    assert ("symbol: US (from the file name; pass --symbol to choose); note: it does not match the data set name 'spy': "
            "if the ticker is SPY, re-ingest with --symbol SPY --overwrite") in out
    from yooptx.data import DataCatalog
    cat = DataCatalog()
    assert [(cat.info(n)['symbols'], cat.info(n)['adj_close']) for n in ('orcl', 'spy')] == [(['ORCL'], True), (['US'], False)]


def test_check_all_ends_with_a_summary_line(home, tmp_path):
    "Three data sets: one clean, one with warnings, one breaking the bars contract; the last line counts them."
    samples = tmp_path / 'samples'
    samples.mkdir()
    keep = [d for d in SAMPLES if d['name'] in ('btc_1d', 'vix_1d')]     # btc_1d has gaps (a warning); vix_1d only info
    for d in keep: shutil.copy(REPO / 'data/samples' / d['file'], samples / d['file'])
    from yooptx.data import sha256_file
    broken = pl.DataFrame({'timestamp': ['2021-01-04', '2021-01-05', '2021-01-05'], 'symbol': 'X', 'open': 1.0, 'high': 1.0,
                           'low': 1.0, 'close': 1.0, 'volume': 1.0}).with_columns(
        pl.col('timestamp').str.to_datetime(time_unit='us', time_zone='UTC'))
    broken.write_parquet(samples / 'broken.parquet')
    keep.append({'name': 'broken', 'file': 'broken.parquet', 'freq': '1D', 'calendar': '24/7', 'close_only': False, 'symbols': ['X'],
                 'rows': 3, 'start': '2021-01-04T00:00:00+00:00', 'end': '2021-01-05T00:00:00+00:00',
                 'sha256': sha256_file(samples / 'broken.parquet'), 'license': 'MIT', 'source': 'test'})
    (samples / 'MANIFEST.json').write_text(json.dumps({'format': 1, 'datasets': keep}))
    rc, out, err = run_cli('data', 'check', '--all', env_extra={'YOOPTX_SAMPLES': str(samples)})
    assert rc == 1 and 'data check found errors in broken' in err, (rc, err)       # errors fail the command, like a linter
    assert out.rstrip().splitlines()[-1] == '3 data set(s) checked: 1 with errors (broken), 1 with warnings (btc_1d)'
