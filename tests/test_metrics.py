"""Metrics against hand computations and reference libraries: Sharpe/Sortino/drawdown/Calmar on a small series,
classification metrics vs scikit-learn, ECE by simulation, IC vs scipy.stats.spearmanr, quintile spreads on a
constructed panel, break-even cost, and bad input."""
import math
from datetime import datetime, timedelta
import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr
from sklearn import metrics as skm
from yooptx.metrics import (MetricsError, annualized_return, break_even_cost, calibration_bins, classification_metrics, drawdown_spells,
                            ece, hit_rate_by, ic_by_date, ic_summary, max_drawdown, prediction_metrics, quantile_returns, quantile_spread,
                            sharpe, sortino, top_k_precision, trade_metrics, trading_metrics)

# a small series worked out by hand: equity 1 → 1.02 → 0.9996 → 1.019592 → 0.96861 → 1.017039 → 1.027209
R = np.array([0.02, -0.02, 0.02, -0.05, 0.05, 0.01])


def test_sharpe_sortino_by_hand():
    # mean = 0.03 / 6 = 0.005; deviations .015 -.025 .015 -.055 .045 .005 -> sum of squares 0.00615, var (ddof 1) 0.00123
    mean, sd = 0.005, math.sqrt(0.00615 / 5)
    assert sharpe(R, 252) == pytest.approx(mean / sd * math.sqrt(252), rel=1e-12)
    # downside: min(r, 0)^2 = .0004 and .0025 over all 6 bars -> sqrt(0.0029 / 6)
    assert sortino(R, 252) == pytest.approx(mean / math.sqrt(0.0029 / 6) * math.sqrt(252), rel=1e-12)


def test_drawdown_and_calmar_by_hand():
    # peak 1.02 * 0.98 * 1.02 = 1.019592 (< 1.02, still under water); trough 1.019592 * 0.95 = 0.9686124 -> depth 1 - 0.9686124 / 1.02
    depth = 1 - 1.02 * 0.98 * 1.02 * 0.95 / 1.02
    assert max_drawdown(R) == pytest.approx(depth, rel=1e-12)
    # equity after bar 4: 0.9686124 * 1.05 = 1.01704 (< 1.02), after bar 5: 1.02721 >= 1.02: one spell from bar 0 to bar 5
    sp = drawdown_spells(R)
    assert sp['peak'].to_list() == [0] and sp['trough'].to_list() == [3] and sp['recovery'].to_list() == [5] and sp['bars'].to_list() == [5]
    m = trading_metrics(R, 252)
    growth = 1.02 * 0.98 * 1.02 * 0.95 * 1.05 * 1.01
    ann = growth ** (252 / 6) - 1
    assert m['total_return'] == pytest.approx(growth - 1, rel=1e-12)
    assert m['annual_return'] == pytest.approx(ann, rel=1e-12) == annualized_return(R, 252)
    assert m['calmar'] == pytest.approx(ann / depth, rel=1e-12)
    assert m['max_dd_duration_bars'] == 5 and math.isnan(m['max_dd_duration_days'])


def test_drawdown_duration_hand_example():
    # equity: 1, 1.1 (peak), 1.0, 1.05, 1.1 (recovered: bars 1 -> 4 = 3), 1.2 (peak), 0.9, 0.95 (never recovers: 5 -> 7 = 2)
    e = np.array([1.0, 1.1, 1.0, 1.05, 1.1, 1.2, 0.9, 0.95])
    r = e[1:] / e[:-1] - 1
    ts = [datetime(2024, 1, 1) + timedelta(hours=4 * i) for i in range(r.size)]
    sp = drawdown_spells(r, ts)
    assert sp['peak'].to_list() == [0, 4] and sp['recovery'].to_list() == [3, None] and sp['bars'].to_list() == [3, 2]
    assert sp['duration'].to_list() == [timedelta(hours=12), timedelta(hours=8)]
    assert sp['depth'].to_list() == pytest.approx([1 - 1 / 1.1, 0.25])
    m = trading_metrics(pl.DataFrame({'timestamp': ts, 'net': r}), 2190)
    assert m['max_dd_duration_bars'] == 3 and m['max_dd_duration_days'] == pytest.approx(0.5)
    assert m['max_drawdown'] == pytest.approx(0.25)


def test_break_even_cost_zeroes_net_sharpe():
    rng = np.random.default_rng(11)
    pos = np.sign(rng.standard_normal(2000)) * (rng.uniform(size=2000) < 0.7)          # -1, 0, +1 positions
    tv = np.abs(np.diff(np.r_[0.0, pos]))
    gross = pos * (1e-3 * pos + 0.01 * rng.standard_normal(2000))          # the position knows the drift's sign
    c = break_even_cost(gross, tv) / 1e4
    assert c > 0
    assert abs(sharpe(gross - c * tv, 252)) < 1e-10
    assert sharpe(gross - 0.5 * c * tv, 252) > 0 > sharpe(gross - 2 * c * tv, 252)
    m = trading_metrics(gross - 1e-4 * tv, 252, gross=gross, turnover=tv, exposure=np.abs(pos))
    assert m['break_even_bps'] == pytest.approx(c * 1e4)
    assert m['cost_drag'] == pytest.approx(1e-4 * tv.mean() * 252)
    assert m['exposure'] == pytest.approx((pos != 0).mean())
    net = gross - 1e-4 * tv
    assert m['hit_rate'] == pytest.approx((net[pos != 0] > 0).mean())


def test_trade_metrics_and_hit_rate_by_weekday():
    tm = trade_metrics(pl.DataFrame({'pnl': [3.0, -1.0, -1.0, 2.0]}))
    assert tm['win_rate'] == 0.5 and tm['profit_factor'] == 2.5 and tm['avg_win'] == 2.5 and tm['avg_loss'] == -1.0
    ts = pl.datetime_range(datetime(2024, 1, 1), datetime(2024, 1, 28), '1d', time_zone='UTC', eager=True)   # 2024-01-01 is a Monday
    net = np.where(np.arange(28) % 7 == 0, 0.01, -0.01)
    h = hit_rate_by(pl.DataFrame({'timestamp': ts, 'net': net}), 'weekday')
    assert h['weekday'].to_list() == list(range(1, 8)) and h['hit_rate'].to_list() == [1.0] + [0.0] * 6 and h['n_bars'].to_list() == [4] * 7


@pytest.mark.parametrize('K', [2, 3])
def test_classification_against_sklearn(K):
    rng = np.random.default_rng(K)
    n = 400
    classes = [0, 1] if K == 2 else [-1, 0, 1]
    logits = rng.standard_normal((n, K))
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array(classes)[rng.integers(0, K, n)]
    m = classification_metrics(y, P, classes)
    pred = np.array(classes)[P.argmax(1)]
    assert m['accuracy'] == pytest.approx(skm.accuracy_score(y, pred))
    assert m['balanced_accuracy'] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    assert [m['precision'][str(c)] for c in classes] == pytest.approx(p)
    assert [m['recall'][str(c)] for c in classes] == pytest.approx(r)
    assert [m['f1'][str(c)] for c in classes] == pytest.approx(f)
    assert m['macro_f1'] == pytest.approx(skm.f1_score(y, pred, labels=classes, average='macro', zero_division=0))
    assert m['mcc'] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert m['confusion'] == skm.confusion_matrix(y, pred, labels=classes).tolist()
    assert m['log_loss'] == pytest.approx(skm.log_loss(y, P, labels=classes))
    assert m['brier'] == pytest.approx(skm.brier_score_loss(y, P, labels=classes, scale_by_half=False))


def test_ece_calibrated_vs_miscalibrated():
    rng = np.random.default_rng(5)
    n = 40_000
    logits = 1.5 * rng.standard_normal((n, 3))
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (rng.uniform(size=(n, 1)) > P.cumsum(1)).sum(1) - 1                     # y ~ Categorical(P) over classes -1, 0, 1
    good = classification_metrics(y, P, [-1, 0, 1])
    assert good['ece'] < 0.015                                                  # sampling noise only
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)      # overconfident: same argmax, wrong confidence
    bad = classification_metrics(y, sharp, [-1, 0, 1])
    assert bad['ece'] > 0.1 and bad['accuracy'] == good['accuracy']
    # per-class reliability curve of a calibrated model: frequency tracks mean probability in every populated bin
    b = calibration_bins(y, P, [-1, 0, 1], target=1).filter(pl.col('n') > 500)
    assert np.abs(b['frequency'] - b['mean_prob']).max() < 0.05
    assert ece(b) < 0.02


def _panel(seed=0, T=40, S=12, noise=1.0, ties=False):
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 1, 1)
    ts = [t0 + timedelta(days=i) for i in range(T) for _ in range(S)]
    sig = rng.standard_normal(T * S)
    if ties: sig = np.round(sig)
    return pl.DataFrame({'timestamp': ts, 'symbol': [f's{j}' for _ in range(T) for j in range(S)], 'encoder': 'm', 'params_hash': 'h',
                         'seed': 0, 'split': 'test', 'fold': 0, 'prediction': sig,
                         'fwd_return': 0.01 * (sig + noise * rng.standard_normal(T * S))}).with_columns(pl.col('timestamp').dt.replace_time_zone('UTC'))


@pytest.mark.parametrize('ties', [False, True])
def test_ic_matches_scipy_per_date(ties):
    p = _panel(1, ties=ties)
    ic = ic_by_date(p)
    for (t,), d in p.group_by(['timestamp']):
        ref = spearmanr(d['prediction'], d['fwd_return']).statistic
        assert ic.filter(pl.col('timestamp') == t)['ic'][0] == pytest.approx(ref, abs=1e-12)
    s = ic_summary(ic)
    x = ic['ic'].to_numpy()
    assert s['ic_mean'][0] == pytest.approx(x.mean()) and s['ic_std'][0] == pytest.approx(x.std(ddof=1))
    assert s['ic_t'][0] == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(x.size))


def test_ic_drops_missing_returns_and_small_dates():
    p = _panel(2, T=3, S=4)
    p = p.with_columns(fwd_return=pl.when(pl.col('symbol') == 's0').then(None).otherwise(pl.col('fwd_return')))
    ic = ic_by_date(p, min_symbols=4)
    assert ic['n'].to_list() == [3, 3, 3] and ic['ic'].null_count() == 3
    ic3 = ic_by_date(p, min_symbols=3)
    d = p.filter(pl.col('timestamp') == p['timestamp'][0], pl.col('fwd_return').is_not_null())
    assert ic3['ic'][0] == pytest.approx(spearmanr(d['prediction'], d['fwd_return']).statistic)


def test_quantile_spread_monotone_construction():
    # 10 symbols, forward return = 0.001 * rank of the prediction: quintile q holds ranks 2q-1, 2q
    T, S = 5, 10
    rng = np.random.default_rng(3)
    rows = []
    for i in range(T):
        sig = rng.permutation(S).astype(float)
        rows += [{'timestamp': datetime(2024, 1, 1 + i), 'symbol': f's{j}', 'prediction': sig[j], 'fwd_return': 0.001 * (sig[j] + 1)} for j in range(S)]
    p = pl.DataFrame(rows)
    q = quantile_returns(p, 5)
    assert q.filter(pl.col('timestamp') == datetime(2024, 1, 1))['mean_return'].to_list() == pytest.approx([0.0015, 0.0035, 0.0055, 0.0075, 0.0095])
    assert quantile_spread(q)['spread'].to_list() == pytest.approx([0.008] * T)
    tk = top_k_precision(p, 3)
    assert tk['precision'].to_list() == [1.0] * T and tk['baseline'].to_list() == pytest.approx([0.3] * T)


def test_prediction_metrics_groups_models():
    p = _panel(4, noise=0.5)
    up = (p['fwd_return'] > 0).cast(pl.Float64)
    p1 = 1 / (1 + np.exp(-2 * p['prediction'].to_numpy()))
    a = p.with_columns(label=up, prob_0=1 - p1, prob_1=p1)
    b = a.with_columns(seed=pl.lit(1), prediction=-pl.col('prediction'), prob_0=pl.col('prob_1'), prob_1=pl.col('prob_0'))
    pm = prediction_metrics(pl.concat([a, b]))
    assert pm['seed'].to_list() == [0, 1]
    assert pm['ic_mean'][0] == pytest.approx(-pm['ic_mean'][1]) and pm['ic_mean'][0] > 0.5
    ref = classification_metrics(up, np.c_[1 - p1, p1], [0, 1])
    assert pm['accuracy'][0] == pytest.approx(ref['accuracy']) and pm['log_loss'][0] == pytest.approx(ref['log_loss'])
    assert pm['direction_accuracy'][0] + pm['direction_accuracy'][1] == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(MetricsError, match='empty series'): sharpe([], 252)
    with pytest.raises(MetricsError, match='length mismatch'): trading_metrics([0.01, 0.02], 252, turnover=[0.1])
    with pytest.raises(MetricsError, match='missing or infinite value'): trading_metrics([0.01, float('nan')], 252)
    with pytest.raises(MetricsError, match='missing or infinite value'): trading_metrics(pl.DataFrame({'net': [0.01, None]}), 252)
    with pytest.raises(MetricsError, match='periods_per_year'): trading_metrics([0.01, 0.02], 0)
    with pytest.raises(MetricsError, match='length mismatch'): classification_metrics([0, 1, 1], [[.5, .5], [.5, .5]], [0, 1])
    with pytest.raises(MetricsError, match='expected shape'): classification_metrics([0, 1], [[.5, .5], [.5, .5]], [-1, 0, 1])
    with pytest.raises(MetricsError, match='missing or infinite probability'): classification_metrics([0, 1], [[.5, .5], [np.nan, .5]], [0, 1])
    with pytest.raises(MetricsError, match='no row with a label'): classification_metrics([np.nan], [[.5, .5]], [0, 1])
    with pytest.raises(MetricsError, match='negative turnover|negative value'): break_even_cost([0.01], [-0.1])
    p = _panel(0, T=2, S=4).with_columns(prediction=pl.when(pl.col('symbol') == 's1').then(None).otherwise(pl.col('prediction')))
    with pytest.raises(MetricsError, match='missing or infinite `prediction`'): ic_by_date(p)
    with pytest.raises(MetricsError, match='lacks column'): ic_by_date(p.drop('fwd_return'))
    with pytest.raises(MetricsError, match='no `pnl` column'): trade_metrics(pl.DataFrame({'x': [1.0]}))
