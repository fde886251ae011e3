"""yooptx.attention: integrated gradients against exact linear attributions, completeness on a trained transformer,
rollout and entropy identities, faithfulness on a model with known relevant inputs, and reports/attention.ipynb
executed with papermill on a tiny run."""
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

import yooptx.reporting.explain as A
from yooptx.config import TrainConfig
from yooptx.core import UserError
from yooptx.models.encoders import Encoder, EncoderOutput, prepare_inputs
from yooptx.normalize import Normalizer
from yooptx.training.checkpoints import Predictor
from yooptx.training.module import SequenceModel, make_meta

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers

def _features(n_bars=120, seed=0):
    from yooptx.features import build
    from yooptx.synth import planted_signal
    bars = planted_signal(n_bars, n_symbols=2, seed=seed, sharpe=3.0)
    return build(bars, preset='minimal', freq='1D', calendar='XNYS')


def _predictor(encoder, feats, window=8, kind='classification', target_scale=1.0, seed=0, **params):
    "An untrained Predictor of `encoder` on `feats`' columns (normalizer fit on all rows)."
    names = [c for c in feats.columns if c not in ('timestamp', 'symbol')]
    cls = [0, 1] if kind == 'classification' else None
    meta = make_meta(encoder, params, TrainConfig(window=window), names, window, kind, cls, [1, 1] if cls else None,
                     Normalizer().fit(feats, np.arange(feats.height)), target_scale=target_scale, seed=seed,
                     calendar='XNYS', freq='1D', fold=0, params_hash='test', params=params)
    torch.manual_seed(seed)
    return Predictor(SequenceModel(meta), 'test')


class WindowLinear(Encoder):
    "A linear encoder over the whole (masked) window: summary = W · vec(x) + b (no nonlinearity anywhere)."
    def __init__(self, n_features, window, d_model=5):
        super().__init__(type('C', (), {'d_model': d_model})(), n_features, window)
        self.lin = nn.Linear(window * n_features, d_model)
    def forward(self, past_values, observed_mask=None, output_attentions=False):
        x, _ = prepare_inputs(past_values, observed_mask, self.n_features)
        return EncoderOutput(summary=self.lin(x.flatten(1)))


class FewCells(Encoder):
    "Output depends only on feature 0 of the last 3 bars: f = Σ w_i x_i² (not linear; IG from 0 is exactly w_i x_i²)."
    def __init__(self, n_features, window):
        super().__init__(type('C', (), {'d_model': 1})(), n_features, window)
        self.w = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    def forward(self, past_values, observed_mask=None, output_attentions=False):
        x, _ = prepare_inputs(past_values, observed_mask, self.n_features)
        return EncoderOutput(summary=(x[:, -3:, 0] ** 2 * self.w).sum(1, keepdim=True))


def _dirichlet_maps(n, H, T, layers, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.dirichlet(np.ones(T), size=(n, H, T)) for _ in range(layers)]


@pytest.fixture(scope='module')
def feats():
    return _features()


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    "A bake-off run with one small feature-gated transformer (2 folds, 1 seed, 1 epoch); its bars saved as bars.parquet."
    from yooptx.experiments.bakeoff import bakeoff
    from yooptx.config import load_config
    from yooptx.experiment import prepare
    from yooptx.synth import planted_signal
    root = tmp_path_factory.mktemp('attn')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('YOOPTX_HOME', str(root / 'home'))
        cfg = load_config({'encoders': {'transformer': {'params': {'d_model': 16, 'n_heads': 2, 'n_layers': 2, 'window': 16,
                                                                    'feature_gate': True, 'batch_size': 128}}},
                           'baselines': ['buy_hold'], 'seeds': [0], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 1}})
        bars = planted_signal(300, n_symbols=2, seed=3, sharpe=3.0)
        run = bakeoff(cfg, data=prepare(cfg, bars=bars, calendar='XNYS'), run_dir=root / 'runs' / 'tiny', progress=False)
        bars.write_parquet(run / 'bars.parquet')
    return run


# ---------------------------------------------------------------- integrated gradients

@pytest.mark.parametrize('method,steps', [('trapezoid', 3), ('riemann', 1)])
def test_ig_equals_exact_linear_attribution(feats, method, steps):
    "For f linear in x, IG is exactly (x − x0) ⊙ ∇f, for any baseline, any steps; masked bars get 0."
    pr = _predictor('manual', feats, window=8, kind='regression', target_scale=2.5, n_layers=0, d_model=5)
    pr.model.encoder = WindowLinear(len(pr.features), 8)
    win = A.windows(pr, feats, 'SYN0', max_windows=6)
    win.observed_mask[0, :3] = False                              # a padded young window
    x0 = np.random.default_rng(1).normal(size=(1, 8, len(pr.features))).astype(np.float32)
    ig = A.integrated_gradients(pr, win, baseline=x0, steps=steps, method=method)
    W = (pr.model.head.proj.weight @ pr.model.encoder.lin.weight).detach().numpy().reshape(8, -1) * 2.5   # ∂f/∂x (L, F)
    x = win.past_values.numpy(); m = win.observed_mask.numpy()[..., None]
    exact = (x - x0) * W * m
    np.testing.assert_allclose(ig.attributions, exact, rtol=1e-4, atol=1e-6)
    assert np.all(ig.attributions[0, :3] == 0)
    # f(x) − f(x0) by hand (the baseline's values at masked bars are zeroed by the encoder too)
    np.testing.assert_allclose(ig.delta, (exact).reshape(6, -1).sum(1), rtol=1e-4, atol=1e-6)
    assert ig.completeness()['max_gap'] < 1e-4


def test_ig_manual_encoder_only_last_bar(feats):
    "The manual encoder (MLP with no hidden layer) reads the last bar only: IG is (x − 0) ⊙ w there and 0 elsewhere."
    pr = _predictor('manual', feats, window=8, kind='regression', n_layers=0, d_model=4)
    win = A.windows(pr, feats, 'SYN1', max_windows=4)
    ig = A.integrated_gradients(pr, win, steps=2)
    Fn = len(pr.features)
    w = (pr.model.head.proj.weight @ pr.model.encoder.mlp[0].weight[:, :Fn]).detach().numpy()[0]
    np.testing.assert_allclose(ig.attributions[:, -1], win.past_values[:, -1].numpy() * w, rtol=1e-4, atol=1e-6)
    assert np.abs(ig.attributions[:, :-1]).max() == 0


def test_ig_completeness_on_trained_transformer(tiny_run):
    ex = A.explain(tiny_run, 'transformer', n_windows=6)
    ig = A.integrated_gradients(ex.predictor, ex.windows, steps=32)
    c = ig.completeness()
    assert c['mean_abs_delta'] > 1e-4                      # the check is not vacuous: the signal does move
    assert c['relative_gap'] < 0.02, c
    coarse = A.integrated_gradients(ex.predictor, ex.windows, steps=2).completeness()
    assert c['max_gap'] <= coarse['max_gap'] + 1e-9          # more steps: smaller quadrature error
    # a class logit as target: completeness holds for it as well, and f(x) is that logit
    lg = A.integrated_gradients(ex.predictor, ex.windows, target=1, steps=32)
    with torch.no_grad(): out = ex.predictor.model(ex.windows.past_values, ex.windows.observed_mask)[:, 1].numpy()
    np.testing.assert_allclose(lg.f_x, out, rtol=1e-5, atol=1e-6)
    assert lg.completeness()['relative_gap'] < 0.02
    # the signal IG explains is the prediction frame's `prediction`
    pf = ex.predictor.predict(ex.data.features, ex.windows.rows)
    np.testing.assert_allclose(ig.f_x, pf['prediction'].to_numpy(), atol=1e-5)


def test_ig_bad_input(feats):
    pr = _predictor('manual', feats, n_layers=0)
    win = A.windows(pr, feats, max_windows=2)
    with pytest.raises(UserError, match="baseline='ones'"): A.integrated_gradients(pr, win, baseline='ones')
    with pytest.raises(UserError, match='does not broadcast'): A.integrated_gradients(pr, win, baseline=np.zeros((3, 5)))
    with pytest.raises(UserError, match='steps=0'): A.integrated_gradients(pr, win, steps=0)
    with pytest.raises(UserError, match='target=7: the model has 2 outputs'): A.integrated_gradients(pr, win, target=7)


# ---------------------------------------------------------------- rollout and entropy

def test_rollout_one_layer_is_identity_mixed_map():
    maps = _dirichlet_maps(4, 3, 6, 1)
    R = A.rollout_matrix(maps)
    np.testing.assert_allclose(R, 0.5 * maps[0].mean(1) + 0.5 * np.eye(6), atol=1e-12)
    np.testing.assert_allclose(R.sum(-1), 1.0, atol=1e-12)


def test_rollout_layers_multiply_and_rows_sum_to_one():
    maps = _dirichlet_maps(3, 2, 5, 3, seed=4)
    hat = [0.5 * a.mean(1) + 0.5 * np.eye(5) for a in maps]
    np.testing.assert_allclose(A.rollout_matrix(maps), hat[2] @ hat[1] @ hat[0], atol=1e-12)
    for pool in ('cls', 'last', 'mean'):
        r = A.attention_rollout(maps, pool, np.ones((3, 4), bool))     # 4 bars + a CLS token
        np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-12)
    R = hat[2] @ hat[1] @ hat[0]
    m = np.array([[True, True, True, True, True]] * 3); m[0, 3:] = False
    np.testing.assert_allclose(A.attention_rollout(maps, 'last', m)[0], R[0, 2])
    np.testing.assert_allclose(A.attention_rollout(maps, 'mean', m)[0], R[0, :3].mean(0))
    with pytest.raises(UserError, match="pooling='max'"): A.attention_rollout(maps, 'max')


def test_rollout_of_one_layer_transformer(feats):
    pr = _predictor('transformer', feats, window=8, d_model=8, n_heads=2, n_layers=1)
    win = A.windows(pr, feats, max_windows=3)
    maps = A.attention_maps(pr, win)
    assert len(maps) == 1 and maps[0].shape == (3, 2, 9, 9)
    ro = A.attention_rollout(maps, A.summary_pooling(pr))
    np.testing.assert_allclose(ro, 0.5 * maps[0].astype(np.float64).mean(1)[:, -1] + 0.5 * np.eye(9)[-1], atol=1e-6)


def test_entropy_bounds_and_extremes():
    rng = np.random.default_rng(0)
    maps = [rng.dirichlet(np.full(7, a), size=(5, 2, 7)) for a in (0.01, 1.0, 100.0)]
    e = A.attention_entropy(maps)
    assert e.shape == (5, 3) and (e >= 0).all() and (e <= 1).all()
    assert e[:, 0].mean() < e[:, 1].mean() < e[:, 2].mean()          # sharper Dirichlet draws: lower entropy
    T = 5
    one, uni = np.broadcast_to(np.eye(T), (1, 1, T, T)), np.full((1, 1, T, T), 1 / T)
    np.testing.assert_allclose(A.attention_entropy([one, uni]), [[0.0, 1.0]], atol=1e-9)
    # only observed queries count: uniform rows at padded queries do not raise the entropy of one-hot rows
    mix = np.array(one, copy=True); mix[0, 0, :2] = 1 / T
    m = np.array([[False, False, True, True, True]])
    np.testing.assert_allclose(A.attention_entropy([mix], m), [[0.0]], atol=1e-9)
    # hand value: a row [0.5, 0.5, 0, 0, 0] has entropy log 2 / log 5
    half = np.zeros((1, 1, T, T)); half[..., :2] = 0.5
    np.testing.assert_allclose(A.attention_entropy([half]), [[np.log(2) / np.log(5)]], atol=1e-9)


# ---------------------------------------------------------------- faithfulness

def test_faithfulness_finds_the_relevant_inputs(feats):
    pr = _predictor('manual', feats, window=16, kind='regression', n_layers=0, d_model=1)
    pr.model.encoder = FewCells(len(pr.features), 16)
    pr.model.head = nn.Identity()
    win = A.windows(pr, feats, 'SYN0', max_windows=8)
    ig = A.integrated_gradients(pr, win, steps=16)
    relevant = np.zeros(ig.attributions.shape, bool); relevant[:, -3:, 0] = True
    assert np.abs(ig.attributions[~relevant]).max() == 0                # IG puts everything on the 3 cells …
    np.testing.assert_allclose(ig.attributions[:, -3:, 0], win.past_values[:, -3:, 0].numpy() ** 2 * [1, 2, 3], rtol=1e-3, atol=1e-6)  # … exactly w x²
    fa = A.faithfulness(pr, win, ig, k=3, n_random=30, seed=0)
    assert fa['topk_delta'] > 5 * fa['random_delta'] and fa['ratio'] > 5 and fa['share_topk_worse'] == 1.0
    # the number can fail: attributions pointing at irrelevant cells change nothing when masked
    wrong = np.where(relevant, 0.0, 1.0) * np.arange(relevant[0].size).reshape(relevant.shape[1:])
    fw = A.faithfulness(pr, win, wrong, k=3, n_random=30, seed=0)
    assert fw['topk_delta'] == 0 and fw['ratio'] == 0 and fw['share_topk_worse'] == 0
    # whole bars: masking the 3 last bars (the relevant ones) changes the signal most
    fs = A.faithfulness(pr, win, ig, k=3, unit='step', n_random=30)
    assert fs['ratio'] > 2 and fs['share_topk_worse'] == 1.0
    assert 'matter more than chance' in A.faithfulness_text(fa) and 'no better than chance' in A.faithfulness_text(fw)
    # masking to a baseline equal to the input changes nothing
    same = A.faithfulness(pr, win, ig, k=3, n_random=5, baseline=win.past_values.numpy())
    assert same['topk_delta'] == 0 and same['random_delta'] == 0
    with pytest.raises(UserError, match='k=999'): A.faithfulness(pr, win, ig, k=999)


# ---------------------------------------------------------------- a trained checkpoint and the report

def test_attention_of_trained_checkpoint(tiny_run):
    sel = json.loads((tiny_run / 'selection.json').read_text())['families']['transformer']['deploy_params_hash']
    ck = A.find_checkpoint(tiny_run, 'transformer')
    assert ck.name == 'best.ckpt' and ck.parent.name == 'fold1-seed0' and ck.parent.parent.name == sel
    ex = A.explain(tiny_run, 'transformer', symbol='SYN1', n_windows=5)
    assert ex.checkpoint == ck and len(ex.windows) == 5 and ex.windows.symbol == 'SYN1'
    fold = next(f for f in ex.data.folds if f.fold == 1)
    assert set(ex.windows.rows) <= set(fold.test.tolist())                # default range: the checkpoint's test block
    sym_test = [r for r in fold.test.tolist() if ex.data.features['symbol'][r] == 'SYN1']
    assert ex.windows.rows[-1] == max(sym_test, key=lambda r: ex.data.features['timestamp'][r])
    maps = A.attention_maps(ex.predictor, ex.windows)
    assert len(maps) == 2 and maps[0].shape == (5, 2, 17, 17)           # 16 bars + CLS
    np.testing.assert_allclose(maps[1].sum(-1), 1.0, atol=1e-5)
    fr = A.entropy_frame(ex.windows, maps)
    assert fr.height == 10 and fr['entropy'].is_between(0, 1).all()
    g = A.feature_gates(ex.predictor)
    assert g.height == len(ex.predictor.features) and g['gate'].is_between(0, 1, closed='none').all()
    assert g['gate'].is_sorted(descending=True)
    s = ex.summary()
    assert dict(zip(s['item'], s['value']))['attention'] == 'yes'
    # an explicit date range: evenly spaced windows inside it
    ts = ex.data.features.filter(pl.col('symbol') == 'SYN0')['timestamp']
    a, b = ts[100], ts[150]
    w = A.windows(ex.predictor, ex.data, 'SYN0', str(a.date()), str(b.date()), max_windows=4)
    assert len(w) == 4 and w.timestamp.min() >= a and w.timestamp.max() == b


def test_families_without_attention_still_explained(feats):
    pr = _predictor('lstm', feats, window=8, d_model=8)
    win = A.windows(pr, feats, max_windows=3)
    maps = A.attention_maps(pr, win)
    assert maps is None and A.entropy_frame(win, maps) is None and A.attention_rollout(maps) is None and A.feature_gates(pr) is None
    for f in (A.plot_attention(maps, win, predictor=pr), A.plot_entropy(None, pr), A.plot_rollout(None, win, pr), A.plot_gates(None, pr)):
        assert 'not available' in f.layout.annotations[0].text or 'no feature gate' in f.layout.annotations[0].text
    ig = A.integrated_gradients(pr, win, steps=16)
    assert ig.completeness()['relative_gap'] < 0.05
    assert A.faithfulness(pr, win, ig, n_random=5)['n_windows'] == 3


def test_run_and_checkpoint_errors(tiny_run, tmp_path):
    with pytest.raises(UserError, match="no checkpoint of encoder 'lstm'; encoders with checkpoints: transformer"):
        A.find_checkpoint(tiny_run, 'lstm')
    with pytest.raises(UserError, match='checkpoint .*nope.ckpt not found'): A.find_checkpoint(tiny_run, checkpoint='nope.ckpt')
    with pytest.raises(UserError, match='does not exist or has no config.yaml'): A.resolve_run(tmp_path / 'none')
    bare = tmp_path / 'bare'; bare.mkdir()
    for f in ('config.yaml', 'manifest.json'): (bare / f).write_text((tiny_run / f).read_text())
    with pytest.raises(UserError, match="made on bars passed in .*bars.parquet"): A.run_data(bare)
    with pytest.raises(UserError, match="symbol 'NOPE' is not in the data"): A.explain(tiny_run, symbol='NOPE')


def test_report_notebook_executes(tiny_run, tmp_path):
    pm = pytest.importorskip('papermill')
    nb = REPO / 'reports' / 'attention.ipynb'
    src = json.loads(nb.read_text())
    assert all(not c.get('outputs') for c in src['cells'] if c['cell_type'] == 'code'), 'commit reports/attention.ipynb without outputs'
    declared = {p['name'] for p in pm.inspect_notebook(str(nb)).values()}
    assert {'run_dir', 'encoder', 'checkpoint', 'symbol', 'start', 'end', 'n_windows', 'ig_steps'} <= declared
    out = tmp_path / 'attention.ipynb'
    pm.execute_notebook(str(nb), str(out), parameters=dict(run_dir=str(tiny_run), n_windows=4, ig_steps=8), kernel_name='python3',
                        progress_bar=False, cwd=str(REPO / 'reports'))
    cells = [c for c in json.loads(out.read_text())['cells'] if c['cell_type'] == 'code']
    outs = [o for c in cells for o in c.get('outputs', [])]
    assert not [o for o in outs if o['output_type'] == 'error']
    def is_plotly(o):
        d = o.get('data', {})
        return 'application/vnd.plotly.v1+json' in d or 'plotly' in ''.join(d.get('text/html', ''))
    assert sum(map(is_plotly, outs)) >= 9                                 # heatmaps, entropy, rollout, gates, 3 IG, faithfulness
    text = ''.join(''.join(o.get('text', '')) for o in outs)
    assert 'Masking the' in text and 'ratio' in text
