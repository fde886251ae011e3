"""Ingest round trips: CSV with a local time zone, parquet, multi-member zip, close-only data; the manifest
records SHA-256 of source and stored file; bad files leave the catalog untouched."""
import hashlib, json, zipfile
import numpy as np
import polars as pl
import pytest
from yooptx.data import DataCatalog, sha256_file
from yooptx.bars import DataError, validate_bars
from conftest import tree


def _frame(n=50, start='2022-03-07 09:30', freq='1m', sym=None, seed=0):
    rng = np.random.default_rng(seed)
    t = pl.datetime_range(pl.lit(start).str.to_datetime(), pl.lit(start).str.to_datetime() + pl.duration(minutes=n - 1), freq, eager=True)
    px = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    d = {'Datetime': t.dt.strftime('%Y-%m-%d %H:%M:%S'), 'Open': px, 'High': px * 1.001, 'Low': px * 0.999, 'Close': px, 'Volume': rng.integers(1, 9, n).astype(float)}
    if sym: d['Ticker'] = [sym] * n
    return pl.DataFrame(d)


def test_csv_with_local_time_zone(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    _frame().write_csv(tmp_path / 'spy.csv')
    e = cat.ingest(tmp_path / 'spy.csv', 'spy_1m', tz='America/New_York', calendar='XNYS')
    bars = cat.load('spy_1m')
    validate_bars(bars)
    assert str(bars['timestamp'][0]) == '2022-03-07 14:30:00+00:00'      # 09:30 New York in winter
    assert e['freq'] == '1m' and e['symbols'] == ['SPY'] and e['rows'] == 50
    assert e['sha256'] == sha256_file(e['path'])
    assert e['source']['sha256'] == hashlib.sha256((tmp_path / 'spy.csv').read_bytes()).hexdigest()
    rep = cat.check('spy_1m')
    assert rep.ok and not rep.by_check('outside_session') and not rep.by_check('gaps')


def test_zip_with_several_symbols_and_parquet(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    z = tmp_path / 'pack.zip'
    with zipfile.ZipFile(z, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr('data/aaa.csv', _frame(seed=1).write_csv())
        zf.writestr('data/bbb.csv', _frame(seed=2).write_csv())
        zf.writestr('README.txt_ignored', 'not data')
    e = cat.ingest(z, 'pack', tz='America/New_York', calendar='XNYS')
    assert e['symbols'] == ['AAA', 'BBB'] and e['rows'] == 100
    assert e['source']['members'] == ['data/aaa.csv', 'data/bbb.csv']
    cat.load('pack').write_parquet(tmp_path / 'p.parquet')
    e2 = cat.ingest(tmp_path / 'p.parquet', 'pack2', calendar='XNYS')
    assert cat.load('pack2').equals(cat.load('pack'))


def test_close_only_and_symbol_column(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    f = _frame(sym='QQQ').select('Datetime', 'Ticker', 'Close')
    f.write_csv(tmp_path / 'c.csv')
    with pytest.raises(DataError, match='close-only source'):
        cat.ingest(tmp_path / 'c.csv', 'c')
    e = cat.ingest(tmp_path / 'c.csv', 'c', close_only=True, calendar='XNYS', tz='America/New_York')
    b = cat.load('c')
    assert e['close_only'] and b['open'].null_count() == b.height and b['symbol'].unique().to_list() == ['QQQ']


def test_failed_ingest_writes_nothing_and_overwrite_is_explicit(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    _frame().write_csv(tmp_path / 'a.csv')
    cat.ingest(tmp_path / 'a.csv', 'a', calendar='XNYS')
    before = tree(tmp_path / 'home')
    bad = _frame().with_columns(High=pl.col('Low') - 1)
    bad.write_csv(tmp_path / 'bad.csv')
    with pytest.raises(DataError, match='high < low'):
        cat.ingest(tmp_path / 'bad.csv', 'a', overwrite=True)
    with pytest.raises(DataError, match='exists already'):
        cat.ingest(tmp_path / 'a.csv', 'a')
    assert tree(tmp_path / 'home') == before
    m = json.loads((tmp_path / 'home/catalog/MANIFEST.json').read_text())
    assert [d['name'] for d in m['datasets']] == ['a']


def test_resample_cache(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    a = cat.load('es_1m', freq='30m')
    assert len(list((tmp_path / 'home/cache').glob('es_1m__30m__*.parquet'))) == 1
    assert cat.load('es_1m', freq='30m').equals(a)
