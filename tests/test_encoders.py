"""Encoders and heads: shapes for every family x head, mask handling, causality, attention capture, the feature
gate, gradient checkpointing, the transformer's patch tokens, determinism, bad-input errors, bf16 autocast, CUDA
(when present), a tiny overfitting check that proves every family is trainable, and a planted-signal check."""
import copy, subprocess, sys
import pytest
import torch
import torch.nn.functional as F
from yooptx.core import UserError
from yooptx.models.encoders import ENCODER_REGISTRY, EncoderError, EncoderOutput, build_encoder, build_head, encoder_config, encoder_params, split_params

FAMILIES = ['manual', 'cnn', 'lstm', 'transformer', 'patchtst']
SMALL = {'manual': {'d_model': 16, 'hidden': 16}, 'cnn': {'d_model': 16, 'n_layers': 2}, 'lstm': {'d_model': 16},
         'transformer': {'d_model': 16, 'n_heads': 2}, 'patchtst': {'d_model': 16, 'n_heads': 2, 'patch_length': 4, 'patch_stride': 2}}
# variants that change how masks and pooling work
VARIANTS = [('manual', {}), ('cnn', {}), ('cnn', {'pooling': 'mean'}), ('lstm', {}),
            ('lstm', {'cell': 'gru', 'bidirectional': True, 'pooling': 'attention'}), ('lstm', {'bidirectional': True, 'n_layers': 2}),
            ('transformer', {}), ('transformer', {'pooling': 'mean', 'causal': True}),
            ('transformer', {'pooling': 'last', 'pos_encoding': 'time2vec', 'feature_gate': True}),
            ('transformer', {'patch_length': 4, 'patch_stride': 2, 'pooling': 'mean'}),
            ('transformer', {'patch_length': 4, 'causal': True, 'pooling': 'last', 'feature_gate': True}),
            ('patchtst', {}), ('patchtst', {'pooling': 'last', 'scaling': 'std'}), ('patchtst', {'scaling': 'mean', 'channel_attention': True})]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in VARIANTS]
B, L, NF = 5, 16, 3


def make(name, seed=0, window=L, n_features=NF, **kw):
    torch.manual_seed(seed)
    return build_encoder(name, n_features, window, **{**SMALL[name], **kw})


def batch(seed=0, b=B, window=L, n_features=NF):
    "Inputs with a random mask: leading padding of random length, a few interior holes, one fully masked row."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, window, n_features, generator=g)
    lead = torch.randint(0, window // 2, (b,), generator=g)
    mask = torch.arange(window).unsqueeze(0) >= lead.unsqueeze(1)
    mask &= torch.rand(b, window, generator=g) > 0.15
    mask[:, -1] = True; mask[1, -1] = False       # row 1: the decision bar itself is missing
    mask[-1] = False                               # last row: nothing observed
    return x, mask


# ---------------------------------------------------------------- shapes, heads, finiteness, gradients
@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('head', [('classification', {'n_classes': 2}), ('classification', {'n_classes': 3}),
                                  ('regression', {}), ('quantile', {'quantiles': [0.1, 0.5, 0.9]}),
                                  ('quantile', {'quantiles': [0.25, 0.75], 'n_outputs': 2}), ('multi', {'n_outputs': 3})])
def test_shapes_every_family_and_head(name, head):
    enc = make(name); kind, kw = head
    h = build_head(kind, enc.d_model, **kw)
    x, mask = batch()
    out = enc(x, mask)
    assert isinstance(out, EncoderOutput) and out.summary.shape == (B, enc.d_model)
    y = h(out.summary)
    expected = {'classification': (B, kw.get('n_classes')), 'regression': (B, 1), 'multi': (B, 3),
                'quantile': (B, 3) if kw.get('n_outputs', 1) == 1 else (B, 2, 2)}[kind]
    assert y.shape == expected and torch.isfinite(y).all()
    if out.states is not None: assert out.states.shape[0] == B and out.states.shape[2] == enc.d_model


@pytest.mark.parametrize('name,kw', VARIANTS, ids=IDS)
def test_finite_outputs_and_gradients_reach_every_parameter(name, kw):
    enc = make(name, **kw).train()
    x, mask = batch(1)
    x.requires_grad_(True)
    out = enc(x, mask)
    assert torch.isfinite(out.summary).all()                     # leading padding and a fully masked row: no NaN
    if out.states is not None: assert torch.isfinite(out.states).all()
    loss = out.summary.pow(2).mean() + (out.states.pow(2).mean() if out.states is not None else 0) + enc.aux_loss()
    loss.backward()
    for n, p in enc.named_parameters():
        if not p.requires_grad: continue                         # PatchTST's fixed sin/cos position table
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no/bad gradient for {n}"
    assert x.grad[mask].abs().sum() > 0                          # observed inputs matter ...
    assert x.grad[~mask].abs().sum() == 0                        # ... masked ones never do


@pytest.mark.parametrize('name', FAMILIES)
def test_heads_train_with_the_encoder(name):
    "A classification head's cross-entropy gradient reaches the encoder."
    enc = make(name); h = build_head('classification', enc.d_model, n_classes=3)
    x, mask = batch(2)
    F.cross_entropy(h(enc(x, mask).summary), torch.tensor([0, 1, 2, 1, 0])).backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_quantile_head_never_crosses():
    h = build_head('quantile', 8, quantiles=[0.05, 0.25, 0.5, 0.75, 0.95], n_outputs=2)
    torch.nn.init.normal_(h.proj.weight, std=5.0)
    q = h(torch.randn(200, 8) * 10)
    assert q.shape == (200, 2, 5) and (q.diff(dim=-1) >= 0).all()


# ---------------------------------------------------------------- masks
@pytest.mark.parametrize('name,kw', VARIANTS, ids=IDS)
def test_values_at_masked_steps_do_not_change_the_summary(name, kw):
    enc = make(name, **kw).eval()
    x, mask = batch(3)
    x2 = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 100)
    a, b = enc(x, mask), enc(x2, mask)
    torch.testing.assert_close(a.summary, b.summary, rtol=0, atol=1e-5)
    if a.states is not None: torch.testing.assert_close(a.states, b.states, rtol=0, atol=1e-5)


def _no_overlap(name, kw):   # overlapping patches: a longer padded window may keep one more partly observed patch
    return name in ('cnn', 'lstm', 'transformer') and kw.get('patch_stride', kw.get('patch_length')) == kw.get('patch_length')

@pytest.mark.parametrize('name,kw', [v for v in VARIANTS if _no_overlap(*v)], ids=[i for i, v in zip(IDS, VARIANTS) if _no_overlap(*v)])
def test_leading_padding_equals_the_shorter_window(name, kw):
    "Padding at the start of a window is invisible: same summary as the window without it."
    enc = make(name, **kw).eval()
    x = torch.randn(3, L, NF)
    for k in (1, 5, L - 1):
        mask = torch.ones(3, L, dtype=torch.bool); mask[:, :k] = False
        torch.testing.assert_close(enc(x, mask).summary, enc(x[:, k:]).summary, rtol=0, atol=1e-5)


def test_manual_sees_only_the_last_bar():
    enc = make('manual').eval()
    x, mask = batch(4)
    x2 = x.clone(); x2[:, :-1] = torch.randn(B, L - 1, NF)
    mask2 = mask.clone(); mask2[:, :-1] = torch.rand(B, L - 1) > 0.5
    torch.testing.assert_close(enc(x, mask).summary, enc(x2, mask2).summary, rtol=0, atol=0)
    x3 = x.clone(); x3[0, -1] += 1.0
    assert not torch.allclose(enc(x3, mask).summary[0], enc(x, mask).summary[0])   # the last bar does matter


@pytest.mark.parametrize('name,kw', [('cnn', {}), ('lstm', {}), ('lstm', {'cell': 'gru'}), ('transformer', {'causal': True}),
                                     ('transformer', {'causal': True, 'pooling': 'mean', 'pos_encoding': 'time2vec'})])
def test_causal_states_do_not_see_the_future(name, kw):
    "With a causal model, the state at step t does not change when inputs after t change (padding or not)."
    enc = make(name, **kw).eval()
    x, mask = batch(5)
    for t in (3, 9, L - 2):
        x2 = x.clone(); x2[:, t + 1:] = torch.randn(B, L - t - 1, NF) * 10
        m2 = mask.clone(); m2[:, t + 1:] = True
        for out2 in (enc(x2, mask), enc(x2, m2)):
            torch.testing.assert_close(enc(x, mask).states[:, :t + 1], out2.states[:, :t + 1], rtol=0, atol=1e-5)
    assert not torch.allclose(enc(x, mask).states[:, -1], enc(x2, mask).states[:, -1])


def test_non_causal_transformer_does_see_the_future():
    enc = make('transformer').eval()
    x = torch.randn(2, L, NF); x2 = x.clone(); x2[:, -1] += 5
    assert not torch.allclose(enc(x).states[:, 0], enc(x2).states[:, 0])


# ---------------------------------------------------------------- transformer specifics
@pytest.mark.parametrize('kw', [{}, {'causal': True}, {'pooling': 'mean'}, {'causal': True, 'pooling': 'last'},
                                {'patch_length': 4, 'patch_stride': 2}, {'patch_length': 3, 'causal': True, 'pooling': 'mean'}])
@pytest.mark.parametrize('padded', [False, True])
def test_attention_capture_matches_the_fast_path(kw, padded):
    enc = make('transformer', n_layers=2, **kw).eval()
    x, mask = batch(6)
    if not padded: mask = None
    fast, slow = enc(x, mask), enc(x, mask, output_attentions=True)
    assert fast.attentions is None
    N = enc.n_tokens(L)
    T = N + (kw.get('pooling', 'cls') == 'cls')
    assert len(slow.attentions) == 2
    for a in slow.attentions:
        assert a.shape == (B, 2, T, T) and (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(B, 2, T), rtol=0, atol=1e-5)
        if kw.get('causal'): assert a.triu(1).abs().sum() == 0
        if padded:   # observed queries put no weight on masked keys
            keys = torch.cat([enc.patch_mask(mask), torch.ones(B, T - N, dtype=torch.bool)], 1)
            w = a.masked_fill(~keys[:, None, :, None], 0.0)                 # rows of observed queries
            assert w.masked_fill(keys[:, None, None, :], 0.0).abs().sum() == 0
    torch.testing.assert_close(fast.summary, slow.summary, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.states, slow.states, rtol=0, atol=1e-5)


@pytest.mark.parametrize('kw', [{}, {'patch_length': 4, 'patch_stride': 2}])
def test_feature_gate(kw):
    enc = make('transformer', feature_gate=True, gate_l1=0.01, **kw)
    x, mask = batch(7)
    out = enc(x, mask)
    assert out.gates.shape == (NF,) and ((out.gates > 0) & (out.gates < 1)).all()
    aux = enc.aux_loss()
    assert aux > 0
    torch.testing.assert_close(aux, 0.01 * torch.sigmoid(enc.gate_logits).mean())
    aux.backward()
    assert (enc.gate_logits.grad > 0).all()           # the L1 term pushes every gate down
    d = enc.diagnostics()
    assert set(d) == {'gate_mean', 'gate_min', 'gate_max', 'gate_sparsity'} and 0 < d['gate_min'] <= d['gate_max'] < 1
    with torch.no_grad(): enc.gate_logits[0] = -20.0   # a closed gate: that feature no longer matters
    x2 = x.clone(); x2[..., 0] = torch.randn(B, L) * 10
    torch.testing.assert_close(enc.eval()(x, mask).summary, enc(x2, mask).summary, rtol=0, atol=1e-5)
    plain = make('transformer', **kw)
    assert plain.aux_loss() == 0 and plain(x, mask).gates is None and plain.diagnostics() == {}


@pytest.mark.parametrize('name,kw', [('transformer', {}), ('transformer', {'causal': True, 'feature_gate': True}),
                                     ('transformer', {'patch_length': 4, 'patch_stride': 2})])
def test_gradient_checkpointing_gives_the_same_gradients(name, kw):
    x, mask = batch(8)
    grads = []
    for ckpt in (False, True):
        enc = make(name, grad_checkpointing=ckpt, dropout=0.2, **kw).train()
        torch.manual_seed(123)                           # same dropout masks (checkpoint replays the RNG state)
        out = enc(x, mask)
        (out.summary.pow(2).sum() + enc.aux_loss()).backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters() if p.requires_grad})
    for n in grads[0]: torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kw', [{}, {'patch_length': 4, 'patch_stride': 3}])
def test_longer_input_than_window_uses_fresh_positions(kw):
    enc = make('transformer', window=8, **kw).eval()
    out = enc(torch.randn(2, 12, NF))
    assert out.summary.shape == (2, 16) and torch.isfinite(out.summary).all()
    assert out.states.shape == (2, enc.n_tokens(12), 16)


# ---------------------------------------------------------------- transformer patch tokens
def _spans(L, P, S):
    "Bars [start, end] of each patch, oldest first, from the documented rule (newest ends at bar L-1)."
    n = 1 + max(0, -(-(L - P) // S))
    return [(L - P - k * S, L - 1 - k * S) for k in reversed(range(n))]


@pytest.mark.parametrize('P,S', [(1, 1), (2, 1), (4, 2), (4, 4), (5, 3), (16, 8), (16, 16)])
def test_patch_shapes_and_cut(P, S):
    "Patches cover every bar, the newest ends at the decision bar, the oldest is left-padded with masked steps."
    from yooptx.models.transformer import patchify
    enc = make('transformer', window=L, patch_length=P, patch_stride=S).eval()
    spans = _spans(L, P, S)
    N = enc.n_tokens(L)
    assert N == len(spans) and spans[-1][1] == L - 1 and spans[0][0] <= 0 < spans[0][0] + S
    if P > 1: assert N == len(spans) and spans[0][0] > -S     # no patch of padding only
    x, mask = batch(13)
    out = enc(x, mask, output_attentions=True)
    assert out.summary.shape == (B, 16) and out.states.shape == (B, N, 16) and out.attentions[0].shape == (B, 2, N + 1, N + 1)
    bars = torch.arange(1.0, L + 1).view(1, L, 1).expand(2, L, NF)            # bar t holds t + 1; padding holds 0
    patches, pm = patchify(bars, torch.ones(2, L, dtype=torch.bool), P, S)
    assert patches.shape == (2, N, P * NF) and pm.all()
    for k, (a, b) in enumerate(spans):                                         # step-major: bar a's F values first
        want = torch.tensor([t + 1.0 if t >= 0 else 0.0 for t in range(a, b + 1)]).repeat_interleave(NF)
        torch.testing.assert_close(patches[0, k], want, rtol=0, atol=0)
    # a patch is observed iff any of its bars is
    want_pm = torch.stack([mask[:, max(a, 0):b + 1].any(1) for a, b in spans], 1)
    assert torch.equal(enc.patch_mask(mask), want_pm)
    assert (out.states[~want_pm] == 0).all()


@pytest.mark.parametrize('P,S', [(4, 2), (4, 4), (5, 3)])
def test_a_bar_reaches_the_model_only_through_the_patches_that_hold_it(P, S):
    "Perturb one bar: exactly the token embeddings of the patches whose span holds it change (early bars: early patches)."
    enc = make('transformer', patch_length=P, patch_stride=S).eval()
    seen = []
    enc.inp.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    x = torch.randn(2, L, NF)
    spans = _spans(L, P, S)
    for t in (0, 1, L // 2, L - 2, L - 1):
        seen.clear()
        x2 = x.clone(); x2[:, t] += 3.0
        enc(x); enc(x2)
        changed = (seen[0] != seen[1]).any(-1).any(0).tolist()                # per token
        assert changed == [a <= t <= b for a, b in spans], (t, changed)
    assert [a <= L - 1 <= b for a, b in spans] == [False] * (len(spans) - 1) + [True]   # the decision bar: newest patch only


@pytest.mark.parametrize('kw', [{'patch_length': 4, 'patch_stride': 2, 'pooling': 'mean'}, {'patch_length': 4, 'pooling': 'last'}])
def test_causal_patch_states_do_not_see_later_bars(kw):
    "With causal=True, the state of patch k does not change when bars after its last bar change."
    enc = make('transformer', causal=True, **kw).eval()
    x, mask = batch(14)
    spans = _spans(L, kw['patch_length'], kw.get('patch_stride') or kw['patch_length'])
    ref = enc(x, mask).states
    for k in (0, 2, len(spans) - 2):
        end = spans[k][1]
        x2 = x.clone(); x2[:, end + 1:] = torch.randn(B, L - end - 1, NF) * 10
        torch.testing.assert_close(enc(x2, mask).states[:, :k + 1], ref[:, :k + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(enc(x2, mask).states[:, k + 1:], ref[:, k + 1:])


@pytest.mark.parametrize('kw', [{'patch_length': 4}, {'patch_length': 4, 'patch_stride': 2, 'pooling': 'mean'},
                                {'patch_length': 3, 'patch_stride': 2, 'causal': True, 'pooling': 'last'}])
def test_a_fully_masked_patch_does_not_change_the_output(kw):
    "Mask every bar of one interior patch: whatever its bars hold, outputs are unchanged; nobody attends to it."
    enc = make('transformer', **kw).eval()
    P, S = enc.config.patch
    spans = _spans(L, P, S)
    k = len(spans) // 2
    a, b = spans[k]
    x = torch.randn(B, L, NF)
    mask = torch.ones(B, L, dtype=torch.bool); mask[:, a:b + 1] = False
    pm = enc.patch_mask(mask)
    assert not pm[:, k].any() and pm.sum(1).eq(len(spans) - 1).all()        # only patch k is fully masked
    out = enc(x, mask, output_attentions=True)
    x2 = x.clone(); x2[:, a:b + 1] = torch.randn(B, b - a + 1, NF) * 100
    out2 = enc(x2, mask)
    torch.testing.assert_close(out.summary, out2.summary, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.states, out2.states, rtol=0, atol=1e-5)
    assert (out.states[:, k] == 0).all()
    others = [i for i in range(out.attentions[0].shape[2]) if i != k]         # the patch itself may attend to itself
    for w in out.attentions: assert (w[:, :, others, k] == 0).all()


def test_patch_length_1_is_the_per_bar_model():
    "patch_length 0 or 1 (with stride 1 or None) builds the same weights from the same seed and gives the same numbers."
    x, mask = batch(15)
    ref = make('transformer', seed=3, causal=True, feature_gate=True).train()
    torch.manual_seed(9); r = ref(x, mask, output_attentions=True)
    for kw in ({'patch_length': 1}, {'patch_length': 0}, {'patch_length': 1, 'patch_stride': 1}):
        enc = make('transformer', seed=3, causal=True, feature_gate=True, **kw).train()
        assert all(torch.equal(p, q) for p, q in zip(ref.state_dict().values(), enc.state_dict().values()))
        torch.manual_seed(9); o = enc(x, mask, output_attentions=True)
        for u, v in zip([r.summary, r.states, *r.attentions], [o.summary, o.states, *o.attentions]):
            torch.testing.assert_close(u, v, rtol=0, atol=0)


@pytest.mark.parametrize('pooling', ['cls', 'mean'])
def test_patches_that_read_only_their_newest_bar_are_the_per_bar_model(pooling):
    "patch_length 2, stride 1, with the older bar's weights zeroed: the per-bar model on the window without bar 0."
    per_bar = make('transformer', seed=4, pooling=pooling).eval()
    patched = make('transformer', seed=5, pooling=pooling, patch_length=2, patch_stride=1).eval()
    sd = dict(per_bar.state_dict())
    sd['inp.weight'] = torch.cat([torch.zeros_like(sd['inp.weight']), sd['inp.weight']], 1)   # (d, [older bar F, newer bar F])
    patched.load_state_dict(sd)
    x = torch.randn(B, L, NF)
    assert patched.n_tokens(L) == L - 1                                       # patches end at bars 1 .. L-1
    torch.testing.assert_close(patched(x).summary, per_bar(x[:, 1:]).summary, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(patched(x).states, per_bar(x[:, 1:]).states, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- determinism, state_dict, registry
@pytest.mark.parametrize('name,kw', VARIANTS, ids=IDS)
def test_deterministic_with_a_seed_and_state_dict_round_trip(name, kw):
    x, mask = batch(9)
    outs = []
    for _ in range(2):
        enc = make(name, seed=42, **kw).train()
        torch.manual_seed(7); outs.append(enc(x, mask).summary)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    enc.eval(); twin = make(name, seed=999, **kw).eval()
    assert not torch.allclose(twin(x, mask).summary, enc(x, mask).summary)
    twin.load_state_dict(copy.deepcopy(enc.state_dict()))
    torch.testing.assert_close(twin(x, mask).summary, enc(x, mask).summary, rtol=0, atol=0)


def test_registry_and_interface():
    # the five numeric families (+ bert and fusion over price-action tokens: tests/test_tokens.py, nbs/models/29_bert)
    assert sorted(ENCODER_REGISTRY) == sorted(FAMILIES + ['bert', 'fusion']) and len(ENCODER_REGISTRY) == 7 and 'patchtst' in ENCODER_REGISTRY
    for name in FAMILIES:
        cls, cfg_cls = ENCODER_REGISTRY[name]
        enc = make(name)
        assert type(enc) is cls and isinstance(enc.config, cfg_cls)
        assert (enc.n_features, enc.window, enc.d_model) == (NF, L, 16)
        assert isinstance(cls.supports_attention, bool) and isinstance(cls.supports_gate, bool)
        assert enc.aux_loss().shape == () and isinstance(enc.diagnostics(), dict)
    assert [n for n in FAMILIES if ENCODER_REGISTRY[n][0].supports_attention] == ['transformer']
    assert encoder_config('transformer') == ENCODER_REGISTRY['transformer'][1]()
    d = encoder_config('transformer')
    assert (d.n_layers, d.n_heads, d.d_model) == (2, 4, 64)


def test_import_safety_in_a_fresh_interpreter():
    code = ("from yooptx.models.encoders import build_encoder; e = build_encoder('transformer', 3, 8); "
            "import yooptx.models.transformer as t; assert type(e) is t.TransformerEncoder; "
            "import sys; assert 'transformers' not in sys.modules, 'HF imported too early'; "
            "p = build_encoder('patchtst', 3, 16); print(type(p).__name__)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'PatchTSTEncoder'


def test_split_params():
    enc, train = split_params('transformer', {'d_model': 32, 'n_heads': 4, 'lr': 3e-4, 'window': 48, 'loss': 'huber'})
    assert enc == {'d_model': 32, 'n_heads': 4} and train == {'lr': 3e-4, 'window': 48, 'loss': 'huber'}
    assert split_params('cnn', {}) == ({}, {})
    with pytest.raises(UserError, match=r"unknown param 'dmodel'; encoder params: d_model, n_heads.*train params: window, batch_size, lr"):
        split_params('transformer', {'dmodel': 32})


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize('call,match', [
    (lambda: build_encoder('gpt', 3, 8), r"unknown encoder 'gpt'; known encoders: manual, cnn, lstm, transformer, patchtst, bert, fusion"),
    (lambda: encoder_config('gpt2'), r"known encoders: manual, cnn, lstm, transformer, patchtst, bert, fusion"),
    (lambda: build_encoder('transformer', 3, 8, d_model=30, n_heads=4), r"d_model=30 is not divisible by n_heads=4"),
    (lambda: build_encoder('patchtst', 3, 32, d_model=10, n_heads=3), r"d_model=10 is not divisible by n_heads=3"),
    (lambda: build_encoder('patchtst', 3, 6), r"window=6 bars is not longer than patch_length=8; use a window of at least 9 bars"),
    (lambda: build_encoder('patchtst', 3, 8), r"window=8 bars is not longer than patch_length=8"),
    (lambda: build_encoder('transformer', 3, 8, heads=4), r"unknown param 'heads'; allowed params: d_model, n_heads, n_layers"),
    (lambda: build_encoder('transformer', 3, 8, patch_length=16), r"window=8 bars is shorter than patch_length=16; use a window of at least 16 bars"),
    (lambda: build_encoder('transformer', 3, 32, patch_length=4, patch_stride=5), r"patch_stride=5 must be in \[1, patch_length=4\]"),
    (lambda: build_encoder('transformer', 3, 32, patch_stride=2), r"patch_stride=2 must be in \[1, patch_length=1\].*set patch_length > 1 to patch at all"),
    (lambda: build_encoder('transformer', 3, 32, patch_length=-2), r"encoders.transformer.params: patch_length must be >= 0"),
    (lambda: build_encoder('lstm', 3, 8, cell='rnn'), r"allowed values: 'lstm', 'gru'"),
    (lambda: build_encoder('cnn', 3, 8, n_layers='4'), r"encoders.cnn.params.n_layers: expected an integer"),
    (lambda: build_encoder('cnn', 0, 8), r"n_features=0: must be an integer >= 1"),
    (lambda: build_encoder('manual', 3, 8, dropout=1.5), r"dropout must be in \[0, 1\)"),
    (lambda: make('cnn')(torch.randn(2, L, NF + 1)), r"past_values has 4 features but the encoder was built for 3"),
    (lambda: make('patchtst')(torch.randn(2, L + 1, NF)), r"patchtst was built for windows of 16 bars, got 17"),
    (lambda: make('transformer')(torch.randn(2, L)), r"past_values must be \(batch, time, features\)"),
    (lambda: build_head('ranking', 8), r"unknown head 'ranking'; known heads: classification, regression, quantile, multi"),
    (lambda: build_head('classification', 8, n_classes=1), r"n_classes must be an integer >= 2"),
    (lambda: build_head('quantile', 8, quantiles=[0.5, 1.2]), r"strictly ascending levels in \(0, 1\)"),
])
def test_bad_input_is_a_user_error(call, match):
    with pytest.raises(UserError, match=match): call()
    assert issubclass(EncoderError, UserError)


# ---------------------------------------------------------------- precision and devices
@pytest.mark.parametrize('name,kw', [v for v in VARIANTS if v[0] != 'manual'], ids=[i for i, v in zip(IDS, VARIANTS) if v[0] != 'manual'])
def test_bf16_autocast_is_finite(name, kw):
    enc = make(name, **kw).train()
    x, mask = batch(10)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = enc(x, mask)
        loss = out.summary.float().pow(2).mean()
    loss.backward()
    assert torch.isfinite(out.summary.float()).all() and all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA GPU')
@pytest.mark.parametrize('name,kw', VARIANTS, ids=IDS)
def test_cuda_matches_cpu_and_runs_under_bf16(name, kw):
    enc = make(name, **kw).eval()
    x, mask = batch(11)
    ref = enc(x, mask).summary
    gpu = enc.to('cuda')
    out = gpu(x.cuda(), mask.cuda())
    assert out.summary.device.type == 'cuda'
    torch.testing.assert_close(out.summary.cpu(), ref, rtol=1e-3, atol=1e-3)
    gpu.train()
    with torch.autocast('cuda', dtype=torch.bfloat16):
        o = gpu(x.cuda(), mask.cuda(), output_attentions=gpu.supports_attention)
        o.summary.float().pow(2).mean().backward()
    assert torch.isfinite(o.summary.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)


# ---------------------------------------------------------------- trainability
@pytest.mark.parametrize('name,kw', [(n, {}) for n in FAMILIES] + [('transformer', {'patch_length': 4, 'patch_stride': 2})],
                         ids=FAMILIES + ['transformer-patch4-2'])
def test_every_family_can_overfit_a_tiny_batch(name, kw):
    "A plain 50-step Adam loop drives the MSE on 16 fixed random targets far below its start (test-only loop)."
    torch.manual_seed(0)
    enc = make(name, dropout=0.0, **({'hidden': 64} if name == 'manual' else {}), **kw)
    head = build_head('regression', enc.d_model)
    x, mask = batch(12, b=16)
    mask[-1] = True                                  # a fully masked row has nothing to fit from
    y = torch.randn(16, 1, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=3e-3 if name == 'transformer' else 1e-2)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = F.mse_loss(head(enc(x, mask).summary), y)
        loss.backward(); opt.step(); losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize('kw', [{'patch_length': 4, 'patch_stride': 2}, {'patch_length': 4}])
def test_patched_transformer_learns_a_planted_signal(kw):
    "Target = mean of feature 0 over the last 4 bars - half of feature 1 six bars back: R^2 > 0.7 on fresh windows after 100 steps."
    def data(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, L, NF, generator=g)
        return x, (x[:, -4:, 0].mean(1) - 0.5 * x[:, -6, 1]).unsqueeze(1)
    (x, y), (xt, yt) = data(512, 20), data(256, 21)
    torch.manual_seed(0)
    enc = make('transformer', dropout=0.0, **kw); head = build_head('regression', enc.d_model)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=5e-3)
    for step in range(100):
        i = step * 128 % 512
        opt.zero_grad(); F.mse_loss(head(enc(x[i:i + 128]).summary), y[i:i + 128]).backward(); opt.step()
    with torch.no_grad(): r2 = 1 - F.mse_loss(head(enc.eval()(xt).summary), yt) / yt.var()
    assert r2 > 0.7, r2
