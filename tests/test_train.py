"""Training end to end on synthetic markets: every sequence encoder learns a planted signal and none learns a random
walk; resume from last.ckpt reproduces an uninterrupted run; stitched predictions cover every test row once; checkpoints
load with weights_only and nothing else; bad input (AMP on CPU, a checkpoint of another config or feature set, a
corrupted checkpoint, an unknown encoder) is handled as documented; TensorBoard events parse."""
import math
from dataclasses import replace
import numpy as np
import polars as pl
import pytest
import torch
from yooptx.core import UserError
from yooptx.experiment import prepare
from yooptx.predictions import PRED_KEY, validate_predictions
from yooptx.predictions import test_rows as only_test   # (imported as test_rows, pytest would collect it)
from yooptx.runs import Ledger, RunError
from yooptx.synth import planted_signal, random_walk
from yooptx.training.checkpoints import CheckpointError, load, read_checkpoint
from yooptx.training.module import make_trainer
import lightning as L
import yooptx.training.driver as wf

ENCODERS = {'manual': {'params': {'d_model': 16, 'hidden': 32}},
            'cnn': {'params': {'d_model': 16, 'n_layers': 3}},
            'lstm': {'params': {'d_model': 16}},
            'transformer': {'params': {'d_model': 16, 'n_heads': 2, 'n_layers': 1, 'ffn_dim': 32}},
            'patchtst': {'params': {'d_model': 16, 'n_heads': 2, 'n_layers': 1, 'ffn_dim': 32, 'patch_length': 4, 'patch_stride': 2}}}

# one symbol, 2500 bars, one fold: ~1000 training windows, ~1250 test rows; the only feature is the 1-bar return, so a
# model must read the window's sequence to find the 5-bar momentum (the last bar alone carries a fifth of it)
LEARN_CFG = {'splits': {'n_folds': 1, 'val_fraction': 0.25}, 'features': {'names': ['ret_1']}, 'labels': {'kind': 'direction'},
             'train': {'window': 16, 'batch_size': 64, 'lr': 3e-3, 'patience': 3, 'warmup_frac': 0.05},
             'budget': {'max_epochs': 8}, 'seeds': [0], 'encoders': ENCODERS}


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads(); torch.set_num_threads(1)   # two shared cores: no oversubscription, same numbers
    yield
    torch.set_num_threads(old)


def _scores(run):
    "Per encoder: test rows, z of the per-row Sharpe of sign(prediction) x fwd_return, and hit rate."
    p = only_test(pl.read_parquet(run / 'predictions.parquet')).drop_nulls('fwd_return')
    out = {}
    for (e,), g in p.group_by('encoder'):
        s, r = np.sign(g['prediction'].to_numpy()), g['fwd_return'].to_numpy()
        pnl = s * r
        out[e] = (g.height, pnl.mean() / pnl.std() * math.sqrt(g.height), (s == np.sign(r)).mean())
    return out


def test_sequence_encoders_learn_planted_signal_not_noise(tmp_path):
    planted = prepare(LEARN_CFG, bars=planted_signal(2500, seed=3, sharpe=4.0, kind='momentum'), calendar='XNYS')
    null = prepare(LEARN_CFG, bars=random_walk(2500, seed=3), calendar='XNYS')
    sp = _scores(wf.fit(planted.config, data=planted, run_dir=tmp_path / 'planted', progress=False))
    sn = _scores(wf.fit(null.config, data=null, run_dir=tmp_path / 'null', progress=False))
    assert set(sp) == set(sn) == set(ENCODERS)
    for e in ENCODERS:
        n, z, hit = sp[e]
        assert n > 1200
        if e != 'manual':   # one-sided: a per-row Sharpe 3 standard errors above 0, and a hit rate 2 above 1/2
            assert z > 3 and hit > 0.5 + 2 * 0.5 / math.sqrt(n), (e, z, hit)
        n0, z0, hit0 = sn[e]   # on a random walk: within 3 standard errors of no skill
        assert abs(z0) < 3 and abs(hit0 - 0.5) < 3 * 0.5 / math.sqrt(n0), (e, z0, hit0)


SMALL = {'splits': {'n_folds': 3, 'val_fraction': 0.2, 'embargo': 1}, 'features': {'preset': 'minimal'},
         'train': {'window': 12, 'batch_size': 64, 'lr': 3e-3, 'patience': 10},
         'budget': {'max_epochs': 3}, 'seeds': [0, 1],
         'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 2, 'dropout': 0.2}},
                      'transformer': {'params': {'d_model': 8, 'n_heads': 2, 'n_layers': 1, 'ffn_dim': 16, 'feature_gate': True}}}}


@pytest.fixture(scope='module')
def small():
    return prepare(SMALL, bars=planted_signal(500, n_symbols=2, seed=5, sharpe=3.0), calendar='XNYS')


def test_fit_run_folder_stitching_and_tensorboard(small, tmp_path):
    run = wf.fit(small.config, data=small, run_dir=tmp_path / 'run', seeds=[0], progress=False)
    for f in ('config.yaml', 'manifest.json', 'ledger.parquet', 'predictions.parquet', 'train.log'): assert (run / f).exists(), f
    led = Ledger(run).read()
    assert led.height == 2 * 3 and set(led['status']) == {'ok'}
    for r in led.iter_rows(named=True):
        assert (run / r['checkpoint']).exists() and (run / r['checkpoint']).with_name('last.ckpt').exists()
        assert r['trial_id'] == f"{r['encoder']}/{r['params_hash']}/fold{r['fold']}/seed{r['seed']}"
    pred = pl.read_parquet(run / 'predictions.parquet')
    validate_predictions(pred)                                                # no duplicate keys, finite predictions
    assert pred.select(PRED_KEY).is_duplicated().sum() == 0
    # the test rows of the stitched frame are exactly the folds' test rows: no gap, no duplicate, in time order
    want = pl.concat([small.labels[f.test].select('timestamp', 'symbol') for f in small.folds]).sort('symbol', 'timestamp')
    for (enc,), g in only_test(pred).group_by('encoder'):
        got = g.select('timestamp', 'symbol')
        assert got.equals(got.sort('symbol', 'timestamp'))
        assert got.sort('symbol', 'timestamp').equals(want)
        # each fold's block is contiguous on the bar grid of each symbol
        for (k, s), b in g.group_by('fold', 'symbol'):
            ts = small.bars.filter(pl.col('symbol') == s)['timestamp']
            i = ts.search_sorted(b['timestamp'])
            assert (np.diff(i.to_numpy()) == 1).all()
    # the same predictions come back from the checkpoints
    again = wf.predict(run, small)
    assert np.allclose(again.sort(PRED_KEY)['prediction'].to_numpy(), pred.sort(PRED_KEY)['prediction'].to_numpy(), atol=1e-6)
    # TensorBoard events parse, with loss, LR, grad norm, trading metrics, attention entropy and gate sparsity
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = {}
    for ev in (run / 'tb').rglob('events.out.tfevents.*'):
        ea = EventAccumulator(str(ev.parent)); ea.Reload()
        tags[str(ev.parent.relative_to(run / 'tb'))] = set(ea.Tags()['scalars'])
    assert len(tags) == 6
    for k, t in tags.items():
        assert {'train_loss_step', 'grad_norm', 'val_loss', 'val_sharpe', 'val_ic'} <= t and any(x.startswith('lr-AdamW') for x in t), (k, t)
        if k.startswith('transformer'):
            assert 'attn_entropy/layer0' in t and any(x.startswith('diag/') for x in t), t


def test_checkpoint_is_self_contained(small, tmp_path):
    row = wf.train_trial(small, 'cnn', SMALL['encoders']['cnn']['params'], 2, 0, tmp_path)
    ck = torch.load(tmp_path / row['checkpoint'], weights_only=True)          # plain types and tensors only
    meta = ck['yooptx']
    assert meta['features'] == small.feature_names and meta['window'] == 12 and meta['classes'] == [0, 1]
    assert meta['normalizer']['n_fit_rows'] == len(small.folds[2].train)     # fit on the fold's training rows only
    pr = load(tmp_path / row['checkpoint'])
    raw = small.features.select('timestamp', 'symbol', *reversed(small.feature_names))   # column order does not matter
    f = small.folds[2]
    a = pr.predict(raw, f.test, small.labels)
    b = pl.read_parquet(tmp_path / row['predictions']).filter(pl.col('split') == 'test')
    assert np.allclose(a['prediction'].to_numpy(), b['prediction'].to_numpy(), atol=1e-6)
    assert np.allclose(a['prob_1'] - a['prob_0'], a['prediction'])
    with pytest.raises(CheckpointError, match='features lack column'):
        pr.predict(small.features.drop(small.feature_names[0]), f.test)


class _Crash(L.Callback):
    "Kill training at the start of epoch `at` (after last.ckpt of the epoch before was written)."
    def __init__(self, at): self.at = at
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.at: raise RuntimeError('simulated crash')


def test_resume_reproduces_uninterrupted_run(small, tmp_path, monkeypatch):
    params = SMALL['encoders']['cnn']['params']
    full = wf.train_trial(small, 'cnn', params, 1, 0, tmp_path / 'a')
    orig = wf.make_trainer
    monkeypatch.setattr(wf, 'make_trainer', lambda *a, **k: orig(*a, callbacks=[_Crash(2)], **k))
    crashed = wf.train_trial(small, 'cnn', params, 1, 0, tmp_path / 'b')
    assert crashed['status'] == 'failed' and 'simulated crash' in crashed['error']
    assert read_checkpoint(tmp_path / 'b/checkpoints/cnn' / full['params_hash'] / 'fold1-seed0/last.ckpt')['epoch'] == 1
    monkeypatch.setattr(wf, 'make_trainer', orig)
    resumed = wf.train_trial(small, 'cnn', params, 1, 0, tmp_path / 'b')
    assert resumed['status'] == 'ok' and resumed['n_epochs'] == full['n_epochs'] == 3
    sa = torch.load(tmp_path / 'a' / full['checkpoint'].replace('best', 'last'), weights_only=True)['state_dict']
    sb = torch.load(tmp_path / 'b' / resumed['checkpoint'].replace('best', 'last'), weights_only=True)['state_dict']
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    pa, pb = (pl.read_parquet(d / r['predictions']) for d, r in ((tmp_path / 'a', full), (tmp_path / 'b', resumed)))
    assert pa.equals(pb) and full['val_metric'] == resumed['val_metric']


def test_driver_records_failures_and_resumes(small, tmp_path, monkeypatch):
    orig, calls = wf.make_trainer, []
    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 1: raise RuntimeError('out of budget (simulated)')
        return orig(*a, **k)
    monkeypatch.setattr(wf, 'make_trainer', flaky)
    run = wf.fit(small.config, data=small, run_dir=tmp_path / 'r', encoders=['cnn'], seeds=[0, 1], folds=[2], progress=False)
    led = Ledger(run).read()
    assert led['status'].to_list() == ['failed', 'ok'] and 'out of budget (simulated)' in led['error'][0]
    assert pl.read_parquet(run / 'predictions.parquet')['seed'].unique().to_list() == [1]
    monkeypatch.setattr(wf, 'make_trainer', orig)
    wf.fit(small.config, data=small, run_dir=run, encoders=['cnn'], seeds=[0, 1], folds=[2], progress=False)   # only the failed trial reruns
    led = Ledger(run).read()
    assert led['status'].to_list() == ['failed', 'ok', 'ok'] and led['seed'].to_list() == [0, 1, 0]
    assert sorted(pl.read_parquet(run / 'predictions.parquet')['seed'].unique().to_list()) == [0, 1]
    with pytest.raises(RunError, match=r'different config \(train.lr: run has 0.003, given 0.01'):
        wf.fit(replace(small.config, train=replace(small.config.train, lr=0.01)), data=small, run_dir=run, progress=False)


def test_bad_input(small, tmp_path, caplog):
    params = SMALL['encoders']['cnn']['params']
    row = wf.train_trial(small, 'cnn', params, 0, 0, tmp_path)
    ck = tmp_path / row['checkpoint']
    # a checkpoint of another config (same trial folder: train settings are not part of the params hash)
    other = replace(small, config=replace(small.config, train=replace(small.config.train, weight_decay=0.5)))
    with pytest.raises(CheckpointError, match=r'different config/feature set \(train.weight_decay: checkpoint 0.01, now 0.5\)'):
        wf.train_trial(other, 'cnn', params, 0, 0, tmp_path)
    # ... or of another feature set
    fewer = replace(small, features=small.features.drop('rv_20'))
    with pytest.raises(CheckpointError, match=r'features differ: checkpoint has rv_20 not in the current features'):
        wf.train_trial(fewer, 'cnn', params, 0, 0, tmp_path)
    # corrupted checkpoints: garbage and a truncated file
    data = ck.read_bytes()
    for bad in (b'\x00garbage', data[:len(data) // 2]):
        ck.write_bytes(bad)
        with pytest.raises(UserError, match=f'checkpoint {ck} is corrupted'): load(ck)
    # unknown encoder, unknown param
    with pytest.raises(UserError, match="unknown encoder 'gpt'; known encoders: manual"): wf.train_trial(small, 'gpt', {}, 0, 0, tmp_path)
    with pytest.raises(UserError, match="unknown param 'widht'"): wf.train_trial(small, 'cnn', {'widht': 3}, 0, 0, tmp_path)
    # AMP asked for on CPU: a logged warning, then fp32
    if not torch.cuda.is_available():
        from yooptx.config import TrainConfig
        with caplog.at_level('WARNING', logger='yooptx.train'), pytest.warns(UserWarning, match='falling back to 32-true'):
            tr = make_trainer(TrainConfig(precision='bf16-mixed'))
        assert 'falling back to 32-true' in caplog.text and str(tr.precision) == '32-true'
        amp = replace(small, config=replace(small.config, train=replace(small.config.train, precision='16-mixed'),
                                            budget=replace(small.config.budget, max_epochs=1)))
        with pytest.warns(UserWarning, match='falling back'):
            run = wf.fit(amp.config, data=amp, run_dir=tmp_path / 'amp', encoders=['cnn'], seeds=[0], folds=[0], progress=False)
        assert "train.precision='16-mixed' needs a CUDA GPU" in (run / 'train.log').read_text()
        assert Ledger(run).read()['status'].to_list() == ['ok']


VARIANTS = [({'kind': 'forward_return'}, {'loss': 'huber'}),
            ({'kind': 'forward_return'}, {'loss': 'mse', 'scheduler': 'onecycle'}),
            ({'kind': 'forward_return'}, {'loss': 'quantile', 'quantiles': [0.1, 0.5, 0.9]}),
            ({'kind': 'forward_return'}, {'loss': 'rank', 'swa': True}),
            ({'kind': 'direction'}, {'loss': 'sharpe', 'scheduler': 'none', 'accumulate_grad_batches': 2}),
            ({'kind': 'three_class', 'threshold': 0.005}, {'loss': 'focal', 'class_weights': 'balanced', 'normalize': 'zscore', 'per_symbol': True}),
            ({'kind': 'direction'}, {'normalize': 'none', 'monitor': 'val_ic', 'label_smoothing': 0.1})]


@pytest.mark.parametrize('labels,train', VARIANTS, ids=[f"{l['kind']}-{t.get('loss', 'auto')}" for l, t in VARIANTS])
def test_losses_heads_and_options_train_end_to_end(labels, train, tmp_path):
    cfg = {'splits': {'n_folds': 2}, 'features': {'preset': 'minimal'}, 'labels': labels, 'seeds': [0],
           'train': {'window': 8, 'batch_size': 64, **train}, 'budget': {'max_epochs': 2}}
    d = prepare(cfg, bars=planted_signal(400, n_symbols=2, seed=5, sharpe=3.0), calendar='XNYS')
    row = wf.train_trial(d, 'cnn', {'d_model': 8, 'n_layers': 1}, 1, 0, tmp_path)
    assert row['status'] == 'ok', row['error']
    p = validate_predictions(pl.read_parquet(tmp_path / row['predictions']))
    meta = read_checkpoint(tmp_path / row['checkpoint'])['yooptx']
    f = d.folds[1]
    assert p.filter(pl.col('split') == 'test').height == len(f.test) and p.filter(pl.col('split') == 'val').height == len(f.val)
    if labels['kind'] == 'forward_return':
        y = d.labels['label'].to_numpy()[f.train]
        assert meta['target_scale'] == pytest.approx(float(np.nanstd(y[np.isfinite(y)], ddof=1)), rel=1e-4)
        if train['loss'] == 'quantile':
            q = p.select('q_0.1', 'q_0.5', 'q_0.9').to_numpy()
            assert (np.diff(q, axis=1) >= 0).all() and np.allclose(p['prediction'], p['q_0.5'])
    else:
        probs = p.select(pl.col('^prob_.*$')).to_numpy()
        assert probs.shape[1] == len(meta['classes']) and np.allclose(probs.sum(1), 1, atol=1e-6)
        assert np.allclose(p['prediction'], probs[:, -1] - probs[:, 0])
    if train.get('swa'): assert row['checkpoint'].endswith('swa.ckpt')
    if train.get('normalize') == 'none': assert meta['normalizer'] is None
    if train.get('per_symbol'): assert set(meta['normalizer']['stats']) == {'__pooled__', 'SYN0', 'SYN1'}
