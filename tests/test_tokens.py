"""Price-action tokens as a user runs them: encoder=bert (pretrained and not) and encoder=fusion in a bake-off on a
planted-pattern market, each a trial of the same folds, costs, backtester, ledger and gate; masked-LM pretraining is a
trial type of the run (resumable; not a gate trial); fine-tuning starts from the fold's pretrained weights and refuses
a different tokenizer; the tokenizer hashes are in the manifest."""
import json
from pathlib import Path
import numpy as np
import polars as pl
import pytest
import torch
from yooptx.config import load_config
from yooptx.experiment import prepare
from yooptx.experiments.bakeoff import bakeoff
from yooptx.gate import evaluate
from yooptx.runs import Ledger
from yooptx.synth import planted_signal

P = {'d_model': 16, 'n_heads': 2, 'n_layers': 1, 'd_ff': 32, 'window': 16, 'batch_size': 256, 'min_count': 2, 'mlm_epochs': 2}
CFG = {'features': {'preset': 'price_action_v1'},
       'encoders': {'bert': {'params': P, 'grid': {'pretrained': [True, False]}}, 'fusion': {'params': {**P, 'numeric': 'lstm', 'pretrained': True}}},   # shares the bert's pretraining
       'baselines': ['buy_hold', 'momentum'], 'seeds': [0], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 2}}


@pytest.fixture(scope='module')
def token_run(tmp_path_factory):
    cfg = load_config(CFG)
    data = prepare(cfg, bars=planted_signal(700, n_symbols=2, seed=3, sharpe=3.0, kind='pattern'), calendar='XNYS')
    return bakeoff(cfg, data=data, run_dir=tmp_path_factory.mktemp('tok') / 'run', progress=False), data


def test_bert_and_fusion_are_trials_judged_by_the_gate(token_run):
    run, data = token_run
    led = Ledger(run).read()
    assert set(led['status']) == {'ok'}, led.filter(pl.col('status') != 'ok').select('trial_id', 'error')
    pre = led.filter(pl.col('encoder') == 'pretrain:mlm')                   # one per fold: the fusion's token tower shares it
    assert pre.height == 2 and pre['val_metric_name'].to_list() == ['val_perplexity'] * 2 and (pre['val_metric'] > 1).all()
    sel = json.loads((run / 'selection.json').read_text())
    assert {'bert', 'fusion'} <= set(sel['families'])
    assert sel['families']['bert']['n_configs'] == 2                       # pretrained and not: two configurations
    v = evaluate(run)
    assert v['n_trials'] == 3                                              # bert x 2 + fusion; pretraining is not a strategy
    bt = pl.read_parquet(run / 'backtest.parquet')
    assert {'bert', 'fusion'} <= set(bt['encoder'].unique().to_list())
    # every fitted vocabulary is in the manifest by hash; fine-tuning and pretraining of a fold share one
    toks = json.loads((run / 'manifest.json').read_text())['tokenizers']
    for k in (0, 1):
        hs = {h for p, h in toks.items() if p.endswith(f'fold{k}-seed0')}
        assert len(hs) == 1, toks


def test_fine_tuning_starts_from_the_folds_pretraining_and_refuses_another_tokenizer(token_run):
    from yooptx.models.encoders import EncoderError
    from yooptx.models.tokens import TokenizerError
    from yooptx.training.checkpoints import read_checkpoint
    from yooptx.training.module import SequenceModel
    run, data = token_run
    led = Ledger(run).ok().filter(pl.col('encoder') == 'bert')
    pre = [r for r in led.iter_rows(named=True) if json.loads(r['params']).get('pretrained')]
    assert len(pre) == 2
    meta = read_checkpoint(run / pre[0]['checkpoint'])['yooptx']
    src = run / meta['encoder_params']['init_from']
    assert src.exists() and f"fold{pre[0]['fold']}-seed0" in str(src)
    fresh = SequenceModel(meta)                                            # the model as built before training ...
    fresh.encoder.load_init(run)                                           # ... then started from the pretraining
    want = torch.load(src, weights_only=True)['bert']['embeddings.position_embeddings.weight']
    assert torch.equal(fresh.encoder.tokens.bert.embeddings.position_embeddings.weight, want)
    other = dict(meta, encoder_params={**meta['encoder_params'], 'tokenizer_spec': {**meta['encoder_params']['tokenizer_spec'], 'min_count': 7}})
    with pytest.raises(TokenizerError, match='differs from the one of pretraining'):
        SequenceModel(other).encoder.load_init(run)
    with pytest.raises(EncoderError, match='not found'):
        SequenceModel(dict(meta, encoder_params={**meta['encoder_params'], 'init_from': 'nope/mlm.pt'})).encoder.load_init(run)


def test_pretraining_resumes_from_its_last_checkpoint(token_run, tmp_path):
    import shutil
    from yooptx.training.pretrain import pretrain_tasks, pretrain_trial
    run, data = token_run
    task = [t for t in pretrain_tasks(data.config, [0]) if t['fold'] == 0][0]
    res = tmp_path / 'run'; shutil.copytree(run, res)
    first = json.loads((res / Path(Ledger(run).ok().filter(pl.col('trial_id') == task['trial_id'])['checkpoint'][0]).parent / 'history.json').read_text())
    d = res / 'checkpoints' / 'pretrain-mlm' / task['params_hash'] / 'fold0-seed0'
    (d / 'mlm.pt').unlink()                                                # killed after its last epoch's checkpoint
    ck = torch.load(d / 'last.ckpt', weights_only=False)
    key = 'mlm.bert.embeddings.position_embeddings.weight'     # (the word embeddings are tied to the output layer)
    ck['state_dict'][key] = ck['state_dict'][key] + 1.0                    # mark the checkpoint: a resume keeps the mark, a retrain would not
    torch.save(ck, d / 'last.ckpt')
    row = pretrain_trial(task, data, res)                                  # resumes from last.ckpt: nothing left to train
    again = json.loads((res / Path(row['checkpoint']).parent / 'history.json').read_text())
    assert row['status'] == 'ok' and row['n_epochs'] == 2 and again['history'] == first['history']
    before = torch.load(run / row['checkpoint'], weights_only=True)['bert']['embeddings.position_embeddings.weight']
    after = torch.load(res / row['checkpoint'], weights_only=True)['bert']['embeddings.position_embeddings.weight']
    assert torch.allclose(after, before + 1.0)


def test_a_bert_without_its_token_fields_is_refused_at_plan_time(tmp_path):
    from yooptx.experiments.bakeoff import plan_trials
    from yooptx.models.encoders import EncoderError
    cfg = load_config(dict(CFG, features={'preset': 'manual_v1'}))
    with pytest.raises(EncoderError, match='features.preset=price_action_v1'):
        plan_trials(cfg, [0, 1])


def test_tokenize_report_renders(home):
    from conftest import run_cli
    rc, out, err = run_cli('run', 'tokenize', '-p', 'dataset', 'btc_1d', '-p', 'epochs', '1', '-p', 'mlm_epochs', '1', '--quiet', timeout=900)
    assert rc == 0, err[-3000:]
    html = Path(out.strip().splitlines()[-1]).read_text()
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(html, 'html.parser')
    assert 'Price-action tokens' in html and 'bert (pretrained)' in html and 'bert (from scratch)' in html and 'unigram' in html
    assert not [s for s in soup.find_all('script') if (s.get('src') or '').startswith('http')]     # opens offline
    assert len(soup.select('div.plotly-graph-div')) >= 5      # tokens on the chart, returns by token, MLM curves, attention, equity


def test_folds_too_short_for_the_tokenizer_are_refused_before_training():
    from yooptx.core import UserError
    from yooptx.experiments.bakeoff import check_windows, plan_trials
    cfg = load_config(dict(CFG, splits={'n_folds': 6}, train={'window': 8}, encoders={'bert': {'params': {**P, 'window': 8}}}))
    data = prepare(cfg, bars=planted_signal(300, n_symbols=1, seed=3, kind='pattern'), calendar='XNYS')
    with pytest.raises(UserError, match=r"needs at least 65 bars per symbol before the first token .* fold\(s\) 0"):
        check_windows(data, plan_trials(cfg, [f.fold for f in data.folds]))
