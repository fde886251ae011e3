"""Resampling against independent routes: real E-mini S&P ticks aggregated directly, exchange_calendars'
own minute->session mapping, and a property test that aggregating in steps equals aggregating at once."""
import warnings
from datetime import timedelta
import exchange_calendars as xcals
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from conftest import REPO
from yooptx.data import DataCatalog
from yooptx.resample import resample
from yooptx.calendars import assign_sessions, bar_times

AGG = [pl.col('price').first().alias('open'), pl.col('price').max().alias('high'), pl.col('price').min().alias('low'),
       pl.col('price').last().alias('close'), pl.col('volume').sum().alias('volume')]


@pytest.fixture(scope='module')
def es():
    ticks = pl.read_parquet(REPO / 'data/samples/raw/es_ticks.parquet')
    return DataCatalog().load('es_1m'), ticks


@pytest.mark.parametrize('to', ['5m', '30m', '1h'])
def test_intraday_matches_ticks(es, to):
    m1, ticks = es
    got = resample(m1, to, 'CMES')
    # CME's session opens at 17:00 Chicago, on the hour, so session-aligned bins are clock-aligned here
    want = ticks.group_by(pl.col('timestamp').dt.truncate(to), maintain_order=True).agg(AGG).sort('timestamp')
    assert got.height == want.height
    for c in ('open', 'high', 'low', 'close', 'volume'):
        np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=0, atol=1e-9)
    assert (got['timestamp'] == want['timestamp']).all()


def test_daily_matches_ticks_by_exchange_sessions(es):
    m1, ticks = es
    got = resample(m1, '1D', 'CMES')
    cal = xcals.get_calendar('CMES', start='2013-08-01', end='2013-10-01')
    minutes = ticks['timestamp'].dt.truncate('1m').unique().sort()
    sess = {t: cal.minute_to_session(t.isoformat(), direction='none').date() for t in minutes.to_list()}
    want = (ticks.with_columns(pl.col('timestamp').dt.truncate('1m').replace_strict(sess, return_dtype=pl.Date).alias('session'))
                 .group_by('session', maintain_order=True).agg(AGG).sort('session'))
    assert got['timestamp'].dt.date().to_list() == want['session'].to_list()
    for c in ('open', 'high', 'low', 'close', 'volume'):
        np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize('to', ['5m', '30m', '1h', '1D'])
def test_no_bar_outside_a_session(es, to):
    m1, _ = es
    got = resample(m1, to, 'CMES')
    a = assign_sessions(got['timestamp'], 'CMES', daily=(to == '1D'))
    assert a['in_session'].all()
    if to != '1D':  # every bar sits on its session's grid
        off = (got['timestamp'].dt.epoch('us') - a['session_open'].dt.epoch('us')) % (int(to[:-1]) * (60 if to[-1] == 'm' else 3600) * 10**6)
        assert (off == 0).all()


def test_nyse_hourly_bins_follow_the_session_open():
    t = bar_times('XNYS', '1m', '2021-11-26', '2021-11-29')   # includes a half day (13:00 close)
    rng = np.random.default_rng(0)
    px = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, t.len())))
    m1 = pl.DataFrame({'timestamp': t, 'symbol': 'X', 'open': px, 'high': px * 1.001, 'low': px * 0.999, 'close': px, 'volume': np.ones(t.len())})
    h = resample(m1, '1h', 'XNYS')
    ny = h['timestamp'].dt.convert_time_zone('America/New_York').dt.strftime('%m-%d %H:%M').to_list()
    assert ny[:4] == ['11-26 09:30', '11-26 10:30', '11-26 11:30', '11-26 12:30'] and ny[4] == '11-29 09:30'
    assert h['volume'].to_list()[:4] == [60, 60, 60, 30]     # the half day's last bin is 12:30-13:00
    assert h['volume'].sum() == t.len()


@st.composite
def minute_bars(draw):
    n_days = draw(st.integers(1, 3))
    t = bar_times('XNYS', '1m', '2022-03-07', n=390 * n_days)
    keep = np.array(draw(st.lists(st.booleans(), min_size=t.len(), max_size=t.len())))
    keep[0] = True
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    px = 50 * np.exp(np.cumsum(rng.normal(0, 1e-3, t.len())))
    df = pl.DataFrame({'timestamp': t, 'symbol': 'S', 'open': px, 'high': px * (1 + rng.uniform(0, 1e-3, t.len())),
                       'low': px * (1 - rng.uniform(0, 1e-3, t.len())), 'close': px, 'volume': rng.integers(0, 100, t.len()).astype(float)})
    return df.filter(pl.Series(keep))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(minute_bars())
def test_resampling_in_steps_equals_at_once(m1):
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='.*outside .* sessions')   # all bars are in session here
        for path in (['5m', '15m', '30m'], ['5m', '1h'], ['15m', '1D'], ['30m', '1h', '1D']):
            step = m1
            src = '1m'
            for f in path:
                step = resample(step, f, 'XNYS', source_freq=src); src = f
            once = resample(m1, path[-1], 'XNYS', source_freq='1m')
            assert step.equals(once), path


def _flat_bars(t):
    return pl.DataFrame({'timestamp': t, 'symbol': 'X', 'open': 1.0, 'high': 1.0, 'low': 1.0, 'close': 1.0, 'volume': 1.0})


@pytest.mark.parametrize('cal', ['XHKG', 'XTKS'])
@pytest.mark.parametrize('to', ['15m', '30m', '1h'])
def test_lunch_breaks(cal, to):
    """Exchanges with a lunch break: bins restart at the break's end, no bar lands in the break, and the
    resampled grid is exactly the calendar's grid that the quality check expects."""
    m1 = _flat_bars(bar_times(cal, '1m', '2021-10-04', '2021-10-08'))
    got = resample(m1, to, cal, source_freq='1m')
    assert got['timestamp'].to_list() == bar_times(cal, to, '2021-10-04', '2021-10-08').to_list()
    assert assign_sessions(got['timestamp'], cal)['in_session'].all()
    assert got['volume'].sum() == m1.height
    from yooptx.quality import check_bars
    rep = check_bars(got, to, cal)
    assert not rep.findings, rep


def test_fx_sessions_roll_at_5pm_new_york():
    m1 = _flat_bars(bar_times('FX', '1h', '2017-03-06', '2017-03-17'))     # spans the US DST change of 2017-03-12
    d = resample(m1, '1D', 'FX', source_freq='1h')
    assert d['volume'].to_list() == [24.0] * 10
    ny = m1['timestamp'].dt.convert_time_zone('America/New_York')
    assert set(ny.filter(ny.dt.weekday() == 7).dt.hour().to_list()) == {17, 18, 19, 20, 21, 22, 23}


def test_available_at_never_before_the_bar_ends():
    from yooptx.calendars import available_at
    hk = bar_times('XHKG', '1h', '2021-10-04', '2021-10-04')
    got = available_at(hk, '1h', 'XHKG').dt.convert_time_zone('Asia/Hong_Kong').dt.strftime('%H:%M').to_list()
    assert got == ['10:30', '11:30', '12:00', '14:00', '15:00', '16:00']      # 11:30 bar ends at lunch
    for cal, f in (('XNYS', '30m'), ('CMES', '1h'), ('FX', '1h'), ('24/7', '15m')):
        t = bar_times(cal, f, '2021-03-01', '2021-03-31')
        a = available_at(t, f, cal)
        step = timedelta(minutes=int(f[:-1]) * (60 if f[-1] == 'h' else 1))
        assert ((a > t) & (a <= t + step)).all(), cal
        nxt = t.shift(-1)
        assert (a.head(-1) <= nxt.head(-1)).all(), cal          # known before the next bar opens
    d = bar_times('CMES', '1D', '2021-03-01', '2021-03-31')
    assert (available_at(d, '1D', 'CMES') > d).all()            # a daily bar is known at its session's close
