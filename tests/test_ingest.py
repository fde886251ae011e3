"""Ingest round trips: CSV with a local time zone, parquet, multi-member zip, close-only data; the manifest
records SHA-256 of source and stored file; bad files leave the catalog untouched. Which symbol a file gets, a
calendar that does not fit the bars, the adjusted close, and no split advice for an index or a volume-less series."""
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
    cat.ingest(tmp_path / 'a.csv', 'a', calendar='XNYS', tz='America/New_York')
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


def _daily(days, close=None, volume=1e6, **extra):
    "Daily bars on the given ISO dates, as a user's CSV would hold them."
    close = np.full(len(days), 100.0) if close is None else np.asarray(close, float)
    return pl.DataFrame({'Date': days, 'Open': close, 'High': close * 1.01, 'Low': close * 0.99, 'Close': close,
                         'Volume': volume, **extra})


def _sessions(n=60, start='2021-01-04'):
    from yooptx.calendars import bar_times
    return bar_times('XNYS', '1D', start, n=n).dt.strftime('%Y-%m-%d').to_list()


def test_symbol_comes_from_option_column_or_file_name_and_ingest_says_which(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    days = _sessions(5)
    _daily(days).write_csv(tmp_path / 'ORCL-1995-2014.csv')
    e = cat.ingest(tmp_path / 'ORCL-1995-2014.csv', 'orcl')
    assert e['symbols'] == ['ORCL'] and e['symbol_note'] == 'symbol: ORCL (from the file name; pass --symbol to choose)'
    assert cat.info('orcl')['symbol_from'] == 'the file name'
    _daily(days).write_csv(tmp_path / 'us.csv')            # the review's case: us.csv stored as symbol US under --name spy
    e = cat.ingest(tmp_path / 'us.csv', 'spy')
    assert e['symbols'] == ['US']
    assert e['symbol_note'] == ("symbol: US (from the file name; pass --symbol to choose); note: it does not match the data set "
                                "name 'spy': if the ticker is SPY, re-ingest with --symbol SPY --overwrite")
    e = cat.ingest(tmp_path / 'us.csv', 'spy', symbol='SPY', overwrite=True)
    assert e['symbols'] == ['SPY'] and e['symbol_note'] == 'symbol: SPY (from --symbol)'
    _daily(days, Ticker=['QQQ'] * 5).write_csv(tmp_path / 'nasdaq.csv')
    e = cat.ingest(tmp_path / 'nasdaq.csv', 'q')
    assert e['symbols'] == ['QQQ'] and e['symbol_note'] == "symbol: QQQ (from the file's 'Ticker' column)"
    _daily(days).write_csv(tmp_path / '2021-01.csv')
    before = tree(tmp_path / 'home')
    with pytest.raises(DataError, match=r"cannot tell the symbol from the file name '2021-01.csv'.*pass symbol= \(--symbol\)"):
        cat.ingest(tmp_path / '2021-01.csv', 'x')
    assert tree(tmp_path / 'home') == before


def test_a_calendar_the_bars_do_not_fit_is_refused_naming_share_examples_and_the_fitting_calendar(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    every_day = pl.date_range(pl.date(2021, 1, 1), pl.date(2021, 3, 31), eager=True).cast(pl.Utf8).to_list()
    _daily(every_day).write_csv(tmp_path / 'btc.csv')     # 24/7 bars
    with pytest.raises(DataError) as ex:
        cat.ingest(tmp_path / 'btc.csv', 'btc', calendar='XNYS')
    assert str(ex.value) == ('btc.csv: 29 of 90 bars (32.2%) fall outside the sessions of calendar XNYS (more than the 2% allowed; '
                             'dated on non-session days, e.g. 2021-01-01 Fri, 2021-01-02 Sat, 2021-01-03 Sun): the bars fit 24/7 '
                             '(0 outside): ingest with --calendar 24/7; if XNYS is right, drop the bars outside its sessions first')
    assert not (tmp_path / 'home/catalog/MANIFEST.json').exists()
    e = cat.ingest(tmp_path / 'btc.csv', 'btc')           # left to itself, ingest picks the calendar that fits
    assert e['calendar'] == '24/7' and 'calendar 24/7 guessed' in e['notes']
    # one stray Saturday bar in 60 sessions is data noise: accepted, and said
    _daily(sorted(_sessions(60) + ['2021-01-09'])).write_csv(tmp_path / 'abc.csv')
    e = cat.ingest(tmp_path / 'abc.csv', 'abc', calendar='XNYS')
    assert e['calendar'] == 'XNYS' and '1 bar(s) (1.64%) fall outside the XNYS sessions' in e['notes']


def test_exchange_local_times_read_as_utc_get_the_tz_fix(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    _frame().write_csv(tmp_path / 'spy.csv')               # 09:30 New York, written without a zone
    with pytest.raises(DataError, match=r"50 of 50 bars \(100.0%\) fall outside .* XNYS .*e.g. 2022-03-07 Mon 09:30 UTC.*"
                                        r"the times look like XNYS's local time \(America/New_York\), not UTC: ingest with --tz America/New_York"):
        cat.ingest(tmp_path / 'spy.csv', 'spy', calendar='XNYS')


def test_hourly_fx_under_nyse_is_refused_and_fx_suggested(tmp_path):
    from yooptx.calendars import bar_times
    cat = DataCatalog(root=tmp_path / 'home')
    t = bar_times('FX', '1h', '2021-03-01', '2021-03-12')
    n = t.len()
    pl.DataFrame({'Datetime': t.dt.strftime('%Y-%m-%d %H:%M'), 'Open': 1.2, 'High': 1.21, 'Low': 1.19, 'Close': 1.2,
                  'Volume': 1.0}).write_csv(tmp_path / 'EURUSD_1h.csv')
    with pytest.raises(DataError, match=r'fall outside the sessions of calendar XNYS .*: the bars fit FX \(0 outside\): ingest with --calendar FX;'):
        cat.ingest(tmp_path / 'EURUSD_1h.csv', 'eurusd', calendar='XNYS')
    e = cat.ingest(tmp_path / 'EURUSD_1h.csv', 'eurusd')       # CMES would fit too, but leaves FX's Sunday-evening hour out
    assert (e['calendar'], e['symbols'], e['rows']) == ('FX', ['EURUSD'], n)


def test_adjusted_close_is_recorded_and_loads_either_way(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    days = _sessions(6)
    close = [100.0, 101, 102, 103, 104, 105]
    _daily(days, close, **{'Adj Close': [c / 2 for c in close]}).write_csv(tmp_path / 'AAPL.csv')
    e = cat.ingest(tmp_path / 'AAPL.csv', 'aapl')
    assert e['adj_close'] and e['adj_close_symbols'] == ['AAPL']
    info = cat.info('aapl')
    assert info['adj_close'] and info['adj_close_symbols'] == ['AAPL']
    assert cat.list().filter(pl.col('name') == 'aapl')['adj_close'].to_list() == [True]
    raw = cat.load('aapl')
    assert raw['close'].to_list() == close and raw['adj_close'].to_list() == [c / 2 for c in close]
    adj = cat.load('aapl', adjust='adj_close')
    assert adj['close'].to_list() == [c / 2 for c in close] and adj['volume'].to_list() == [2e6] * 6
    assert cat.load('aapl', adjust=True).equals(adj) and cat.load('aapl', adjust='raw').equals(raw)
    _daily(days, close).write_csv(tmp_path / 'MSFT.csv')
    cat.ingest(tmp_path / 'MSFT.csv', 'msft')
    assert not cat.info('msft')['adj_close'] and cat.info('msft')['adj_close_symbols'] == []
    with pytest.raises(DataError, match=r"data set 'msft' has an adjusted close for no symbol, not for MSFT; load raw prices \(adjust='raw'\)"):
        cat.load('msft', adjust='adj_close')
    with pytest.raises(DataError, match=r"adjust='yes' is not allowed; use 'raw' \(or False\), 'auto'"):
        cat.load('aapl', adjust='yes')


@pytest.mark.parametrize('adj,needle', [(['x'] * 6, 'the adjusted close column holds non-numbers'),
                                        ([1.0, 1, 1, -1, 1, 1], '1 adjusted close value(s) are <= 0, NaN or inf')])
def test_bad_adjusted_close_is_refused(tmp_path, adj, needle):
    cat = DataCatalog(root=tmp_path / 'home')
    _daily(_sessions(6), **{'Adj Close': adj}).write_csv(tmp_path / 'AAPL.csv')
    with pytest.raises(DataError, match='drop the adjusted close column') as ex:
        cat.ingest(tmp_path / 'AAPL.csv', 'aapl')
    assert needle in str(ex.value) and not (tmp_path / 'home/catalog/MANIFEST.json').exists()


@pytest.mark.parametrize('fname,volume,why', [('^VIX.csv', 1e6, 'looks like an index'), ('vix.csv', 1e6, 'looks like an index'),
                                              ('SPX.csv', 1e6, 'looks like an index'), ('ABC.csv', 0.0, 'has no volume'),
                                              ('ABC.csv', None, 'has no volume')])
def test_no_split_advice_for_an_index_or_a_series_without_volume(tmp_path, fname, volume, why):
    cat = DataCatalog(root=tmp_path / 'home')
    close = [15.0] * 20 + [22.5] * 20                      # a 50% jump, as the VIX made on 2016-06-24
    _daily(_sessions(40), close, volume=volume).write_csv(tmp_path / fname)
    cat.ingest(tmp_path / fname, 'x', calendar='XNYS')
    rep = cat.check('x')
    assert not rep.by_check('probable_split')
    (f,) = rep.by_check('large_move')
    assert f.severity == 'info' and f.count == 1 and why in f.detail and '+50%' in f.examples[0]
    assert cat.load('x', adjust=True)['close'].to_list() == close          # no split adjustment either


def test_a_stock_with_volume_still_gets_split_advice(tmp_path):
    cat = DataCatalog(root=tmp_path / 'home')
    close = [100.0] * 20 + [50.0] * 20
    _daily(_sessions(40), close).write_csv(tmp_path / 'ABC.csv')
    cat.ingest(tmp_path / 'ABC.csv', 'abc', calendar='XNYS')
    rep = cat.check('abc')
    assert rep.by_check('probable_split')[0].severity == 'warning' and not rep.by_check('large_move')
    assert cat.load('abc', adjust=True)['close'].to_list() == [50.0] * 40
