"""Correctness of yooptx.backtest: hand-computed cases, invariants (hypothesis), the same-bar look-ahead check with a
power contrast, causality of volatility targeting, FTMO-style rules, bad input, and the gate's per-model return frame."""
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from yooptx.backtest import (BacktestError, BacktestResult, break_even_cost, cost_sensitivity, latency_pnl, run,
                             run_predictions, size_positions)
from yooptx.config import BacktestConfig, CostsConfig
from yooptx.core import UserError
from yooptx.synth import planted_signal, random_walk

HYP = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZERO = dict(half_spread_bps=0.0, commission_bps=0.0, commission_per_unit=0.0, impact_coef=0.0, slippage_bps=0.0)


def _bars(opens, closes, symbol='X', start=(2024, 1, 1), every='1d', volume=1e6):
    "A one-symbol bars frame from explicit opens and closes (high/low wide enough)."
    n = len(opens)
    step = {'1d': timedelta(days=1), '1h': timedelta(hours=1)}[every]
    ts = pl.Series([datetime(*start, tzinfo=timezone.utc) + i * step for i in range(n)], dtype=pl.Datetime('us', 'UTC'))
    o, c = np.asarray(opens, float), np.asarray(closes, float)
    return pl.DataFrame({'timestamp': ts, 'symbol': [symbol] * n, 'open': o, 'high': np.maximum(o, c) * 1.01,
                         'low': np.minimum(o, c) * 0.99, 'close': c, 'volume': np.full(n, float(volume))})


def _pos(bars, values):
    return bars.select('timestamp', 'symbol').with_columns(position=pl.Series(np.asarray(values, float)))


# ---------------------------------------------------------------------------------------------------------------
# A hand-computed case
# ---------------------------------------------------------------------------------------------------------------

def units_reference(opens, closes, held, rate, equity=1.0, every_bar=False):
    """A plain fixed-units account, bar by bar: at a fill (the held target changes) units = target x equity / price,
    paid from cash with cost = rate x traded notional; units are held until the next fill; the position is sold at the
    last close paying its cost. Returns per-bar (weight before the bar, turnover, cost as a share of equity before the
    bar), the equity before each bar and the final equity, and the round trips."""
    cash, units, out, trades, cur = equity, 0.0, [], [], None
    n = len(opens)
    for j in range(n):
        P = opens[j]; E = cash + units * P
        fill = j == 0 and held[j] != 0 or j > 0 and (held[j] != held[j - 1] or every_bar)
        u = c = 0.0
        if fill:
            new = held[j] * E / P
            notional = abs(new - units) * P
            u, c = notional / E, rate[j] * notional / E
            if cur is not None and np.sign(new) != np.sign(units):
                trades.append(dict(cur, exit=P, end=j, pnl=cash + units * P - rate[j] * abs(units) * P - cur['e0'])); cur = None
            cash -= (new - units) * P + rate[j] * notional
            if cur is None and new != 0:
                cur = dict(start=j, entry=P, e0=cash + new * P + rate[j] * abs(new) * P, side='long' if new > 0 else 'short')
            units = new
        out.append((units * P / E, u, c, E))
    E_last = cash + units * closes[-1]
    exit_cost = rate[-1] * abs(units) * closes[-1]
    if cur is not None: trades.append(dict(cur, exit=closes[-1], end=n, pnl=E_last - exit_cost - cur['e0']))
    return out, E_last - exit_cost, trades


O = [100., 102., 101., 105., 104., 103., 106., 108., 107., 110.]
C = [101., 101., 104., 104., 103., 105., 107., 107., 109., 111.]
P = [0., 1., 1., 0.5, -1., -1., 0., 0., 1., 1.]          # decided at each bar's close


def test_hand_computed_ten_bars():
    "A 10-bar backtest against a fixed-units account kept by hand: held weights, turnover, costs, equity and the trades."
    bars = _bars(O, C)
    costs = dict(half_spread_bps=2.0, commission_bps=1.0, commission_per_unit=0.01, slippage_bps=1.0, impact_coef=0.0)
    res = run(bars, _pos(bars, P), costs=costs, initial_equity=1.0)
    # fill at the next open: the target held over bar j is the decision of bar j-1
    held = [0, 0, 1, 1, 0.5, -1, -1, 0, 0, 1]
    assert res.returns['target'].to_list() == held
    rate = [4e-4 + 0.01 / o for o in O]                     # (2 + 1 + 1) bps + 0.01 per unit / price
    bar, final, trades = units_reference(O, C, held, rate)
    w, u, c, E = (np.array(x) for x in zip(*bar))
    np.testing.assert_allclose(res.returns['position'].to_numpy(), w, rtol=0, atol=1e-15)   # the weight drifts between fills
    assert res.returns['position'][3] == pytest.approx(105 / 101 / (1 - rate[2] - 1 + 105 / 101), rel=1e-14)
    exit_u = abs(w[-1]) * C[-1] / O[-1]                     # the long of bar 9 is sold at the last close
    np.testing.assert_allclose(res.returns['turnover'].to_numpy(), u + np.r_[np.zeros(9), exit_u], rtol=0, atol=1e-14)
    np.testing.assert_allclose(res.returns['cost'].to_numpy(), c + np.r_[np.zeros(9), exit_u * rate[-1]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.equity['equity'].to_numpy()[:-1], E[1:], rtol=1e-13)  # equity after bar j = before bar j+1
    assert res.equity['equity'][-1] == pytest.approx(final, rel=1e-13)
    t = res.trades
    assert t['side'].to_list() == ['long', 'short', 'long'] == [x['side'] for x in trades]
    assert t['entry_price'].to_list() == [101.0, 103.0, 110.0]
    assert t['exit_price'].to_list() == [103.0, 108.0, 111.0]
    assert t['closed'].to_list() == [True, True, False] and t['exit_reason'].to_list() == ['signal', 'signal', 'end_of_data']
    assert t['bars'].to_list() == [3, 2, 1]
    assert t['pnl'].sum() == pytest.approx(final - 1, rel=1e-12)
    np.testing.assert_allclose(t['pnl'].to_numpy()[[2]], [trades[2]['pnl']], rtol=1e-9)  # the last trade alone: no shared fill
    assert res.n_nan_signals == 0 and res.n_missing_signals == 0 and res.events.height == 0


def _sma_cross(bars, fast=10, slow=20):
    "Long when the fast SMA of closes is above the slow one, short otherwise (decided at the close)."
    c = pl.col('close')
    return bars.select('timestamp', 'symbol', position=pl.when(c.rolling_mean(fast) > c.rolling_mean(slow)).then(1.0)
                       .when(c.rolling_mean(slow).is_not_null()).then(-1.0).otherwise(0.0))


def test_long_and_short_trades_match_a_fixed_units_account_per_trade():
    "SMA(10, 20) cross long/short on real GOOGL daily bars, zero costs, next-open fills: every trade equals the units account's."
    from yooptx.data import DataCatalog
    bars = DataCatalog().load('googl_1d', start='2012-01-01', end='2016-01-01')
    pos = _sma_cross(bars)
    res = run(bars, pos, costs=ZERO, calendar='XNYS')
    held = np.r_[0.0, pos['position'].to_numpy()[:-1]]
    o, cl = bars['open'].to_numpy(), bars['close'].to_numpy()
    _, final, trades = units_reference(o, cl, held, np.zeros(len(o)))
    t = res.trades
    assert t.height == len(trades) > 40 and set(t['side']) == {'long', 'short'}
    assert t['side'].to_list() == [x['side'] for x in trades]
    np.testing.assert_allclose(t['entry_price'].to_numpy(), [x['entry'] for x in trades], rtol=0, atol=0)
    np.testing.assert_allclose(t['pnl'].to_numpy(), [x['pnl'] for x in trades], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(t['ret'].to_numpy(), [x['pnl'] / x['e0'] for x in trades], rtol=1e-9, atol=1e-12)
    assert res.equity['equity'][-1] == pytest.approx(final, rel=1e-12)
    # a short held for weeks is not the constant-weight short: per-bar rebalancing gives a different record
    eb = run(bars, pos, costs=ZERO, calendar='XNYS', config={'rebalance': 'every_bar'})
    assert abs(eb.equity['equity'][-1] - final) > 1e-3
    assert eb.returns['turnover'].sum() > res.returns['turnover'].sum()      # ... and it pays for the drift it removes


def test_hand_computed_impact_fixed_point():
    "Square-root impact: the entry costs impact_coef*sqrt(participation) exactly; the exit satisfies the fixed point on the equity it leaves."
    bars = _bars([100., 100., 110., 120.], [100., 110., 120., 121.], volume=1000.0)     # dollar volume 1e5 at price 100
    k, E0 = 0.01, 1e6
    res = run(bars, _pos(bars, [0.01, 0.0, 0.0, 0.0]), costs=dict(ZERO, impact_coef=k), initial_equity=E0)
    r = res.returns
    entry = r['cost'][1]
    assert entry == pytest.approx(0.01 * k * math.sqrt(0.01 * E0 / (1000 * 100)), rel=1e-14)     # 10% participation
    e_before_exit = E0 * (1 + r['net'][1])
    exit_ = r['cost'][2]
    # 100 units bought at 100 are sold at 110: notional 11,000 of a 110,000 dollar volume (10 % participation)
    assert exit_ == pytest.approx(k * math.sqrt(100 * 110 / (1000 * 110)) * 100 * 110 / e_before_exit, rel=1e-10)
    # capped at 100 % participation
    res2 = run(bars, _pos(bars, [1.0, 0, 0, 0]), costs=dict(ZERO, impact_coef=k), initial_equity=1e9)
    assert res2.returns['cost'][1] == pytest.approx(k, rel=1e-14)


def test_close_only_fills_at_next_close():
    "Without opens the fill is the next bar's close: one bar later than with opens, never the decision bar's close."
    bars = _bars([100., 100., 100., 100.], [100., 110., 121., 121.]).with_columns(open=pl.lit(None, pl.Float64))
    res = run(bars, _pos(bars, [1, 1, 0, 0]), costs=ZERO)
    # decision at bar 0 fills at close_1 = 110 and earns 110 -> 121; decision at 1 keeps it through 121 -> 121
    np.testing.assert_allclose(res.returns['gross'].to_numpy(), [0, 0.1, 0.0, 0.0], atol=1e-15)
    assert res.settings['close_only']


# ---------------------------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------------------------

@st.composite
def market(draw, max_symbols=3):
    "A seeded random-walk market and a random target-position path on it."
    seed = draw(st.integers(0, 10_000))
    S = draw(st.integers(1, max_symbols))
    n = draw(st.integers(5, 80))
    bars = random_walk(n, n_symbols=S, seed=seed, ann_vol=0.4, overnight=0.2)
    rng = np.random.default_rng(seed)
    pos = np.round(rng.uniform(-1.5, 1.5, bars.height), 1) * (rng.random(bars.height) < 0.7)
    return bars, bars.select('timestamp', 'symbol').with_columns(position=pl.Series(pos))


costs_st = st.fixed_dictionaries({'half_spread_bps': st.floats(0, 20), 'commission_bps': st.floats(0, 5), 'commission_per_unit': st.floats(0, 0.05),
                                  'impact_coef': st.floats(0, 0.05), 'slippage_bps': st.floats(0, 5)})


@HYP
@given(m=market(), costs=costs_st)
def test_zero_position_zero_pnl_and_cost(m, costs):
    bars, pos = m
    res = run(bars, pos.with_columns(position=pl.lit(0.0)), costs=costs, initial_equity=1e5)
    assert (res.returns['net'] == 0).all() and (res.returns['cost'] == 0).all()
    assert (res.equity['equity'] == 1e5).all() and res.trades.height == 0


@HYP
@given(m=market(), costs=costs_st)
def test_doubling_costs_never_raises_net_return(m, costs):
    bars, pos = m
    one = run(bars, pos, costs=costs, initial_equity=1e6, config={'max_leverage': 1.5})
    two = run(bars, pos, costs={k: 2 * v for k, v in costs.items()}, initial_equity=1e6, config={'max_leverage': 1.5})
    assert two.equity['equity'][-1] <= one.equity['equity'][-1] * (1 + 1e-12)
    np.testing.assert_array_equal(one.returns['target'].to_numpy(), two.returns['target'].to_numpy())   # same trades
    # per bar, the cost of each unit traded doubles; the cost itself need not: the dearer path's lower equity drifts a
    # leveraged position's weight differently, so its next rebalance can trade a hair less (hypothesis found one)
    t1, t2 = one.returns['turnover'].to_numpy(), two.returns['turnover'].to_numpy()
    c1, c2 = one.returns['cost'].to_numpy(), two.returns['cost'].to_numpy()
    m = (t1 > 0) & (t2 > 0)
    assert (c2[m] / t2[m] >= c1[m] / t1[m] * (1 - 1e-12)).all()


@HYP
@given(m=market(), costs=costs_st)
def test_shifting_signals_one_bar_equals_latency_one(m, costs):
    bars, pos = m
    shifted = pos.with_columns(pl.col('position').shift(1).over('symbol')).drop_nulls()
    a = run(bars, pos, costs=costs, config={'latency': 1, 'max_leverage': 1.5})
    b = run(bars, shifted, costs=costs, config={'latency': 0, 'max_leverage': 1.5})
    assert a.equity['equity'][-1] == pytest.approx(b.equity['equity'][-1], rel=1e-12)
    j = a.returns.join(b.returns, on=['timestamp', 'symbol'], how='inner', suffix='_b')
    np.testing.assert_allclose(j['net'].to_numpy(), j['net_b'].to_numpy(), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(j['position'].to_numpy(), j['position_b'].to_numpy())


@HYP
@given(seed=st.integers(0, 10_000), n=st.integers(3, 60), c=st.floats(0, 50))
def test_constant_long_is_buy_and_hold_minus_entry_cost(seed, n, c):
    "Always long 1: units 1/open_1 bought paying c, sold at the last close paying c on that notional."
    bars = random_walk(n, seed=seed, overnight=0.3)
    res = run(bars, bars.select('timestamp', 'symbol', position=pl.lit(1.0)), costs=dict(ZERO, half_spread_bps=c))
    o, cl = bars['open'].to_numpy(), bars['close'].to_numpy()
    expected = cl[-1] / o[1] - c / 1e4 - c / 1e4 * cl[-1] / o[1]
    assert res.equity['equity'][-1] == pytest.approx(expected, rel=1e-12)
    assert res.trades.height == 1 and not res.trades['closed'][0] and res.trades['exit_reason'][0] == 'end_of_data'


def test_trades_add_up_and_portfolio_is_sum_of_sleeves():
    "Across symbols with different bar grids: trade pnl sums to the PnL, portfolio equity = sum of the sleeves' equity."
    bars = random_walk(120, n_symbols=3, seed=5)
    bars = bars.filter(~((pl.col('symbol') == 'SYN1') & (pl.int_range(pl.len()).over('symbol') % 7 == 3)))   # SYN1 misses bars
    rng = np.random.default_rng(0)
    pos = bars.select('timestamp', 'symbol', position=pl.Series(rng.choice([-1.0, 0.0, 0.5, 1.0], bars.height)))
    res = run(bars, pos, costs={'half_spread_bps': 5, 'impact_coef': 0.02}, weights={'SYN0': 2, 'SYN1': 1, 'SYN2': 1}, initial_equity=1e6)
    assert res.trades['pnl'].sum() == pytest.approx(res.equity['equity'][-1] - 1e6, rel=1e-9)
    wide = res.symbol_equity.pivot(on='symbol', index='timestamp', values='equity').sort('timestamp')
    filled = wide.with_columns([pl.col(s).forward_fill().fill_null(1e6 * w) for s, w in (('SYN0', .5), ('SYN1', .25), ('SYN2', .25))])
    total = filled.select(pl.sum_horizontal('SYN0', 'SYN1', 'SYN2'))['SYN0'].to_numpy()
    np.testing.assert_allclose(total, res.equity['equity'].to_numpy(), rtol=1e-12)
    p = res.portfolio
    np.testing.assert_allclose(np.cumprod(1 + p['net'].to_numpy()) * 1e6, p['equity'].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(p['net'].to_numpy(), (p['gross'] - p['cost']).to_numpy(), atol=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# Look-ahead, causality, latency, break-even
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_same_bar_signal_does_not_profit(seed):
    "sign(close_t / close_t-1) is known at bar t's close: filled at t+1's open it earns nothing on a random walk; filled on bar t it would."
    bars = random_walk(2000, n_symbols=4, seed=seed, overnight=0.3)
    sig = bars.select('timestamp', 'symbol', prediction=(pl.col('close') / pl.col('close').shift(1) - 1).over('symbol'))
    res = run(bars, sig, costs={'half_spread_bps': 1, 'commission_bps': 0.5}, calendar='XNYS')
    years = 2000 / 252
    assert abs(res.metrics['gross_sharpe']) < 3 / math.sqrt(years) * 1.2     # noise of a Sharpe estimate over ~8 years: ~0.35 per sd
    assert res.metrics['sharpe'] < res.metrics['gross_sharpe']
    # power: the same signal with a (wrong) same-bar fill, computed by hand: position sign(r_t) earns r_t = |r_t|
    c = bars['close'].to_numpy().reshape(4, -1)
    r = c[:, 1:] / c[:, :-1] - 1
    wrong = np.sign(r) * r                                   # (symbol, time)
    port = wrong.mean(axis=0)
    wrong_sharpe = port.mean() / port.std(ddof=1) * math.sqrt(252)
    assert wrong_sharpe > 10


def test_vol_targeting_is_causal():
    "Changing prices after bar k changes no target decided at or before k, and no net return of a bar before k."
    bars = random_walk(300, n_symbols=2, seed=3)
    k = bars.filter(pl.col('symbol') == 'SYN0')['timestamp'][200]
    shock = pl.when(pl.col('timestamp') > k).then(pl.int_range(pl.len()).over('symbol').cast(pl.Float64).sin() * 0.2 + 1.5).otherwise(1.0)
    bars2 = bars.with_columns([(pl.col(c) * shock) for c in ('open', 'high', 'low', 'close')])
    sig = bars.select('timestamp', 'symbol', prediction=pl.lit(1.0) - 2.0 * (pl.int_range(pl.len()) % 3 == 0))
    cfg = {'sizing': 'vol_target', 'vol_target': 0.1, 'vol_lookback': 10, 'max_leverage': 3.0}
    a, b = size_positions(bars, sig, cfg, calendar='XNYS'), size_positions(bars2, sig, cfg, calendar='XNYS')
    before = pl.col('timestamp') <= k
    assert a.filter(before)['target'].equals(b.filter(before)['target'])
    assert not a.filter(~before)['target'].equals(b.filter(~before)['target'])         # the future did change them
    ra, rb = run(bars, sig, config=cfg, calendar='XNYS'), run(bars2, sig, config=cfg, calendar='XNYS')
    early = pl.col('timestamp') < k
    np.testing.assert_array_equal(ra.returns.filter(early)['net'].to_numpy(), rb.returns.filter(early)['net'].to_numpy())


def test_latency_decays_a_planted_edge_and_break_even_is_exact():
    bars, orc, _ = planted_signal(2000, n_symbols=1, seed=11, sharpe=2.0, return_oracle=True)
    lat = latency_pnl(bars, orc, calendar='XNYS', max_latency=3)
    assert lat['latency'].to_list() == [0, 1, 2, 3]
    assert lat['gross_sharpe'][0] > 1.2 and lat['gross_sharpe'][0] > lat['gross_sharpe'][3]
    be = break_even_cost(bars, orc, calendar='XNYS')
    # one symbol: net = gross - c * turnover per bar exactly, so a linear cost of `be` bps leaves mean net 0
    at_be = run(bars, orc, costs=dict(ZERO, half_spread_bps=be), calendar='XNYS')
    assert at_be.portfolio['net'].mean() == pytest.approx(0.0, abs=1e-15)
    assert break_even_cost(at_be) == pytest.approx(be, rel=1e-3)     # from a result: the linear estimate sum(gross) / sum(turnover)
    cs = cost_sensitivity(bars, orc, costs={'half_spread_bps': be / 2, 'commission_bps': 0}, calendar='XNYS', multiples=(0, 1, 2, 3))
    assert cs['sharpe'].to_list() == sorted(cs['sharpe'].to_list(), reverse=True)
    assert cs['sharpe'][2] == pytest.approx(0.0, abs=1e-9)


def test_sizing_modes_from_probabilities():
    bars = random_walk(40, seed=1)
    p1 = np.linspace(0.1, 0.9, 40)
    sig = bars.select('timestamp', 'symbol').with_columns(prediction=pl.Series(2 * p1 - 1), prob_0=pl.Series(1 - p1), prob_1=pl.Series(p1))
    prob = size_positions(bars, sig, {'sizing': 'probability', 'dead_band': 0.2})['target'].to_numpy()
    np.testing.assert_allclose(prob, np.where(np.abs(p1 - 0.5) > 0.2, 2 * p1 - 1, 0.0), atol=1e-15)
    kel = size_positions(bars, sig, {'sizing': 'kelly', 'kelly_fraction': 0.5, 'kelly_cap': 0.3, 'long_only': True})['target'].to_numpy()
    np.testing.assert_allclose(kel, np.clip(0.5 * (2 * p1 - 1), 0, 0.3), atol=1e-15)
    kel2 = size_positions(bars, sig, {'sizing': 'kelly', 'kelly_fraction': 1.0, 'kelly_cap': 1.0}, payoff_ratio=2.0)['target'].to_numpy()
    np.testing.assert_allclose(kel2, np.clip(p1 - (1 - p1) / 2, -1, 1), atol=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# FTMO-style rules
# ---------------------------------------------------------------------------------------------------------------

def test_max_total_loss_flattens_and_stops_for_good():
    o = [100., 100, 100, 100, 90, 80, 85, 95, 100, 110]
    bars = _bars(o, o[1:] + [110.])
    res = run(bars, _pos(bars, [1.0] * 10), costs=dict(ZERO, half_spread_bps=10), config={'max_total_loss': 0.05})
    ev = res.events
    assert ev['rule'].to_list() == ['max_total_loss']
    # long from bar 1; bar 3's close is 90 (marked: 0.9 of equity less the entry cost) -> breach at bar 3, flat from bar 4's open
    assert ev['timestamp'][0] == bars['timestamp'][3]
    assert res.returns['target'].to_list() == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    eq = res.equity['equity'].to_numpy()
    assert eq[-1] == pytest.approx(0.9 - 0.001 - 0.001 * 0.9, rel=1e-14)   # 1/100 units: entry cost, sold at 90 with its cost
    assert np.all(eq[4:] == eq[4])


def test_max_daily_loss_flattens_for_the_day_then_resumes():
    # hourly bars over three UTC days; a crash on day 0 at 05:00
    n = 72
    o = np.full(n, 100.0); o[6:] = 95.0
    bars = _bars(o, np.r_[o[1:], 95.0], every='1h')
    res = run(bars, _pos(bars, np.ones(n)), costs=ZERO, config={'max_daily_loss': 0.03})
    ev = res.events
    assert ev['rule'].to_list() == ['max_daily_loss']
    assert ev['timestamp'][0] == bars['timestamp'][5]             # bar 5 closes at 95: -5 % on the day
    pos = res.returns['target'].to_numpy()
    assert (pos[1:6] == 1).all() and (pos[6:24] == 0).all()       # flat from the next fill to the end of day 0
    assert (pos[24:] == 1).all()                                  # day 1: trading resumes at its first bar
    assert ev['flat_until'][0] == bars['timestamp'][23]


def test_daily_rule_on_daily_bars_sits_out_one_bar():
    o = [100., 100, 100, 90, 90, 90, 90]
    bars = _bars(o, o[1:] + [90.])
    res = run(bars, _pos(bars, [1.0] * 7), costs=ZERO, config={'max_daily_loss': 0.05})
    assert res.events['rule'].to_list() == ['max_daily_loss']
    assert res.returns['target'].to_list() == [0, 1, 1, 0, 1, 1, 1]


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one clear UserError each
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def rw():
    return random_walk(50, n_symbols=2, seed=0)


def test_misaligned_positions_name_the_first_bad_row(rw):
    pos = rw.select('timestamp', 'symbol', position=pl.lit(1.0))
    bad = pl.concat([pos, pl.DataFrame({'timestamp': [rw['timestamp'][10] + pl.select(pl.duration(hours=3)).item()], 'symbol': ['SYN1'], 'position': [1.0]})])
    with pytest.raises(BacktestError, match=r'1 row\(s\) have no bar, first SYN1 @ 2020-01-16 03:00'):
        run(rw, bad)
    with pytest.raises(BacktestError, match=r'no bar, first ZZZ @'):
        run(rw, pos.with_columns(symbol=pl.lit('ZZZ')))
    with pytest.raises(BacktestError, match='timezone-aware'):
        run(rw, pos.with_columns(pl.col('timestamp').dt.replace_time_zone(None)))


def test_nan_signals_are_flat_and_counted(rw):
    sig = rw.select('timestamp', 'symbol', prediction=pl.when(pl.int_range(pl.len()) % 5 == 0).then(float('nan')).otherwise(1.0))
    sig = sig.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col('prediction')).alias('prediction'))
    res = run(rw, sig)
    assert res.n_nan_signals == 21 and res.metrics['n_nan_signals'] == 21
    assert (res.positions.filter(pl.col('signal').is_nan() | pl.col('signal').is_null())['target'] == 0).all()


def test_bad_prices_costs_sizing_columns(rw):
    pos = rw.select('timestamp', 'symbol', position=pl.lit(1.0))
    zero = rw.with_columns(close=pl.when(pl.int_range(pl.len()) == 60).then(0.0).otherwise(pl.col('close')))
    with pytest.raises(UserError, match=r"zero or negative price\(s\) in 'close', e.g. SYN1 @"):
        run(zero, pos)
    with pytest.raises(UserError, match='costs.half_spread_bps: costs cannot be negative'):
        run(rw, pos, costs={'half_spread_bps': -1})
    with pytest.raises(UserError, match='costs.commission_bps: costs cannot be negative'):
        run(rw, pos, costs=CostsConfig(commission_bps=-0.5))
    with pytest.raises(UserError, match="allowed values: 'sign', 'threshold', 'probability', 'kelly', 'vol_target'"):
        run(rw, pos.rename({'position': 'prediction'}), config={'sizing': 'martingale'})
    with pytest.raises(UserError, match='unknown sizing mode'):
        run(rw, pos.rename({'position': 'prediction'}), config=BacktestConfig(sizing='martingale'))
    with pytest.raises(UserError, match=r'missing required column\(s\) volume'):
        run(rw.drop('volume'), pos)
    with pytest.raises(BacktestError, match=r'signals lack column\(s\) symbol'):
        run(rw, pos.drop('symbol'))
    with pytest.raises(BacktestError, match="found neither"):
        run(rw, pos.rename({'position': 'signal'}))
    with pytest.raises(BacktestError, match="needs probabilities of an up move"):
        run(rw, pos.rename({'position': 'prediction'}).with_columns(prediction=pl.lit(3.0)), config={'sizing': 'probability'})
    with pytest.raises(BacktestError, match=r'weights: no weight for traded symbol\(s\) SYN1'):
        run(rw, pos, weights={'SYN0': 1.0})
    with pytest.raises(BacktestError, match='duplicate'):
        run(rw, pl.concat([pos, pos.head(1)]))
    with pytest.raises(BacktestError, match="no such bars column"):
        run(rw, pos, costs={'spread_column': 'spread'})


def test_spread_column_overrides_half_spread():
    bars = _bars([100., 100., 100.], [100., 100., 100.]).with_columns(spread=pl.Series([0.2, 0.1, None]))
    res = run(bars, _pos(bars, [1, 0, 0]), costs=dict(ZERO, half_spread_bps=7, spread_column='spread'))
    # bar 2's quote is missing: 7 bps on the exit notional 1 (flat prices), over the equity left after the entry cost
    np.testing.assert_allclose(res.returns['cost'].to_numpy(), [0, 0.1 / 2 / 100, 7e-4 / (1 - 0.1 / 2 / 100)], atol=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# The gate's input
# ---------------------------------------------------------------------------------------------------------------

def test_run_predictions_backtests_each_model():
    bars, orc, _ = planted_signal(300, n_symbols=2, seed=4, return_oracle=True)
    base = orc.rename({'position': 'prediction'}).with_columns(fold=pl.lit(0, pl.Int32), seed=pl.lit(0, pl.Int32), encoder=pl.lit('a'),
                                                               params_hash=pl.lit('abc'), split=pl.lit('test'), label=pl.lit(None, pl.Float64),
                                                               fwd_return=pl.lit(None, pl.Float64))
    preds = pl.concat([base, base.with_columns(seed=pl.lit(1, pl.Int32), prediction=pl.col('prediction') * 0.5),
                       base.with_columns(split=pl.lit('val'), prediction=-pl.col('prediction'))])
    out = run_predictions(bars, preds, config={'sizing': 'threshold', 'threshold': 0.7})
    assert out.columns == ['encoder', 'params_hash', 'seed', 'timestamp', 'gross', 'cost', 'net', 'turnover', 'exposure']
    assert out.group_by('seed').len().sort('seed')['len'].to_list() == [300, 300]
    one = run(bars, base.select('timestamp', 'symbol', 'prediction'), config={'sizing': 'threshold', 'threshold': 0.7})
    np.testing.assert_allclose(out.filter(pl.col('seed') == 0)['net'].to_numpy(), one.portfolio['net'].to_numpy(), atol=1e-15)
    assert (out.filter(pl.col('seed') == 1)['exposure'] == 0).all()          # |0.5| is below the threshold: never trades
    val = run_predictions(bars, preds, split='val')
    assert val['seed'].unique().to_list() == [0]
    neg = run(bars, base.select('timestamp', 'symbol', prediction=-pl.col('prediction')))
    np.testing.assert_allclose(val['net'].to_numpy(), neg.portfolio['net'].to_numpy(), atol=1e-15)


def test_probability_sizing_reads_the_right_column():
    "Three-class frames (prob_0..prob_2) use (prediction+1)/2, not prob_1 = P(hold); all-null prob_ columns fall back too."
    import polars as pl
    from yooptx.backtest import size_positions
    from yooptx.synth import random_walk
    bars = random_walk(5, seed=0)
    t = bars['timestamp'][:3]
    three = pl.DataFrame({'timestamp': t, 'symbol': 'SYN0', 'prediction': [0.1, -0.5, 0.0],
                          'prob_0': [0.1, 0.6, 0.3], 'prob_1': [0.7, 0.3, 0.4], 'prob_2': [0.2, 0.1, 0.3]})
    out = size_positions(bars, three, {'sizing': 'probability', 'dead_band': 0.05})
    assert out['target'].to_list() == pytest.approx([0.1, -0.5, 0.0])           # 2p - 1 with p = (prediction + 1) / 2
    empty = three.with_columns(pl.lit(None, pl.Float64).alias(c) for c in ('prob_0', 'prob_1', 'prob_2'))
    assert size_positions(bars, empty, {'sizing': 'probability'})['target'].to_list() == pytest.approx([0.1, -0.5, 0.0])
    two = three.drop('prob_2').with_columns(prob_0=1 - pl.col('prob_1'))
    assert size_positions(bars, two, {'sizing': 'probability', 'dead_band': 0.05})['target'].to_list() == pytest.approx([0.4, -0.4, -0.2])


def test_daily_loss_counts_the_exchange_session_day():
    "FX sessions start at 17:00 New York (22:00 UTC in winter): a loss on either side of 22:00 UTC falls in two session days."
    o = [100., 100, 98, 98, 98, 96.04, 96.04]                   # -2 % in the 19:00 bar, -2 % again in the 22:00 bar
    bars = _bars(o, o[1:] + [96.04], start=(2024, 1, 9, 18), every='1h')   # Tuesday 18:00 .. 24:00 UTC
    cfg = {'max_daily_loss': 0.03}
    by_session = run(bars, _pos(bars, [1.0] * 7), costs=ZERO, config=cfg, calendar='FX', freq='1h')
    by_utc_day = run(bars, _pos(bars, [1.0] * 7), costs=ZERO, config=cfg)          # no calendar: the UTC day
    assert by_session.events.height == 0                        # -2 % in the session ending 22:00, -2 % in the next
    assert by_utc_day.events['rule'].to_list() == ['max_daily_loss']   # -3.96 % within one UTC day


def test_borrow_and_financing_accrue_every_bar():
    o = [100.] * 6
    bars = _bars(o, o)
    short = run(bars, _pos(bars, [-1.0] * 6), costs=dict(ZERO, borrow_bps_per_year=252.0), calendar='XNYS')
    r, ppy = short.returns, short.settings['periods_per_year']
    # 252 bps a year accrue 252e-4 / (bars a year) per bar on the short's value (its weight before the bar)
    np.testing.assert_allclose(r['carry'].to_numpy()[1:], 252e-4 / ppy * np.abs(r['position'].to_numpy()[1:]), rtol=1e-12)
    assert r['carry'][1] == pytest.approx(252e-4 / ppy, rel=1e-12)
    assert short.portfolio['carry'].sum() == pytest.approx(r['carry'].sum(), rel=1e-12)
    lev = run(bars, _pos(bars, [2.0] * 6), costs=dict(ZERO, financing_bps_per_year=504.0), config={'max_leverage': 2}, calendar='XNYS')
    assert lev.returns['carry'][1] == pytest.approx((2 - 1) * 504e-4 / ppy, rel=1e-12)   # interest on the borrowed 1x
    long = run(bars, _pos(bars, [1.0] * 6), costs=dict(ZERO, borrow_bps_per_year=252.0, financing_bps_per_year=504.0), calendar='XNYS')
    assert long.returns['carry'].sum() == 0.0                   # an unlevered long borrows nothing
