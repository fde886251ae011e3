"""The safety supervisor as a user meets it: impossible thresholds refused in the config's words, an audit log that a
kill -9 leaves with complete lines only, and decisions that scale the backtest from the next fill."""
import json, signal, subprocess, sys, time
from pathlib import Path
import pytest
from yooptx.config import ConfigError, load_config
from yooptx.supervisor import AuditLog, Decision, SupervisorError, read_audit


def test_impossible_thresholds_are_config_errors():
    for bad, needle in ((['supervisor.caution_drawdown=0.3', 'supervisor.halt_drawdown=0.2'], 'CAUTION comes before HALT'),
                        (['supervisor.caution_scale=0'], 'caution_scale: a multiplier in (0, 1)'),
                        (['supervisor.halt_session_loss=1.5'], 'loss fractions in (0, 1)'),
                        (['supervisor.vol_history=10'], 'vol_history longer than it')):
        with pytest.raises(ConfigError, match=needle.replace('(', r'\(').replace(')', r'\)')): load_config('demo', bad)
    assert load_config('demo', ['supervisor.every=5']).supervisor.every == 5


def test_a_killed_writer_leaves_complete_lines_only(tmp_path):
    log = tmp_path / 'audit.jsonl'
    code = (f"from yooptx.supervisor import AuditLog, Decision\nlog = AuditLog({str(log)!r})\n"
            "i = 0\nwhile True:\n    log.append(i, {'drawdown': i * 1e-6, 'pad': 'x' * 3000}, Decision('CAUTION', 0.5, ['r'] * 50), 0.1); i += 1\n")
    p = subprocess.Popen([sys.executable, '-c', code])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < 2_000_000): time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    rows = read_audit(log)                                   # every line whole
    assert len(rows) > 100 and [r['timestamp'] for r in rows] == [str(i) for i in range(len(rows))]
    AuditLog(log).append('after', {}, Decision('OK', 1.0), 0.0)   # and it can be appended to (a tail the kill cut short is set aside)
    assert read_audit(log)[-1]['timestamp'] == 'after' and len(read_audit(log)) == len(rows) + 1
    with open(log, 'ab') as f: f.write(b'{"level": "HALT", "sc\n')   # a damaged record: reported by line number, never rewritten
    n = len(rows) + 2
    with pytest.raises(SupervisorError, match=f'line {n}: unreadable'): read_audit(log)
    before = log.read_bytes()
    with pytest.raises(SupervisorError): AuditLog(log)
    assert log.read_bytes() == before                        # never rewritten


def test_the_supervised_candidate_is_one_more_trial_judged_and_shown(tmp_path):
    import polars as pl
    from yooptx.experiment import prepare
    from yooptx.experiments.bakeoff import SUPERVISED, bakeoff
    from yooptx.gate import evaluate
    from yooptx.reporting import views
    from yooptx.synth import random_walk
    tiny = {'encoders': {'cnn': {'params': {'d_model': 8, 'n_layers': 1, 'window': 8, 'batch_size': 256}}},
            'baselines': ['buy_hold'], 'seeds': [0, 1], 'splits': {'n_folds': 2}, 'budget': {'max_epochs': 1},
            'supervisor': {'enabled': True, 'caution_drawdown': 0.02, 'halt_drawdown': 0.04, 'halt_sessions': 3}}
    cfg = load_config(tiny)
    run = bakeoff(cfg, data=prepare(cfg, bars=random_walk(500, seed=5), calendar='XNYS'), run_dir=tmp_path / 'run', progress=False)
    led = pl.read_parquet(run / 'ledger.parquet')
    assert led.filter(pl.col('encoder') == SUPERVISED).height == 4            # 2 folds x 2 seeds: counted as trials
    v = evaluate(run)
    assert v['n_trials'] == 2 and 'With the safety supervisor' in v['sentence']   # cnn's configuration + the supervised candidate
    sv = v['supervised']
    assert sv['max_drawdown'] <= sv['max_drawdown_without'] + 1e-12 and sv['verdict'] in ('GO', 'NO-GO')
    bt = pl.read_parquet(run / 'backtest.parquet').filter(pl.col('encoder') == SUPERVISED)
    assert bt['scale'].min() == 0.0 and bt['scale'].max() == 1.0             # it halted at some point and traded freely at others
    t = views.supervisor_table(views.load_run(run))
    assert t['metric'].to_list()[:3] == ['net Sharpe (annualized)', 'total return', 'max drawdown'] and t['with'][-1] == sv['verdict']


def _tiny_llm(path: Path, model_type: str = 'gpt2') -> Path:
    "A randomly initialised causal LM (and word-level tokenizer) built from a local config: nothing downloaded."
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import DistilBertConfig, DistilBertModel, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    words = ['[UNK]', '[PAD]', 'OK', 'CAUTION', 'HALT', 'scale=0.5', 'reason:', 'drawdown', 'Answer:']
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token='[UNK]')); tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token='[UNK]', pad_token='[PAD]', eos_token='[PAD]').save_pretrained(path)
    if model_type == 'gpt2':
        GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=512, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=1)).save_pretrained(path)
    else:
        DistilBertModel(DistilBertConfig(vocab_size=len(words), dim=16, n_layers=1, n_heads=2, hidden_dim=32)).save_pretrained(path)
    return path


def test_the_llm_judge_reads_only_earlier_notes_and_falls_back_to_the_rules(tmp_path, monkeypatch):
    import datetime as dt
    from yooptx.supervisor import LLMJudge, Supervisor
    model = _tiny_llm(tmp_path / 'llm')
    news = tmp_path / 'news.jsonl'
    news.write_text('\n'.join(json.dumps(r) for r in [{'timestamp': '2021-03-01T14:00:00Z', 'text': 'Fed holds rates'},
                                                      {'timestamp': '2021-03-02T09:00:00+00:00', 'text': 'exchange outage'},
                                                      {'timestamp': '2021-03-03T12:00:00Z', 'text': 'FUTURE: crash tomorrow'}]) + '\n')
    sup = Supervisor({'llm_model': str(model), 'news': str(news), 'caution_drawdown': 0.1, 'halt_drawdown': 0.2})
    assert isinstance(sup.judge, LLMJudge)
    when = dt.datetime(2021, 3, 2, 21, 0, tzinfo=dt.timezone.utc)
    prompt = sup.judge.prompt({'drawdown': 0.25, 'time': str(when)})
    assert 'Fed holds rates' in prompt and 'exchange outage' in prompt and 'FUTURE' not in prompt     # as of the decision
    d = sup.decide({'drawdown': 0.25}, when)              # a random model answers gibberish: the rule verdict, logged
    assert d.level == 'HALT' and d.judge == 'rules-fallback' and any('unparseable answer' in r for r in d.reasons), d
    monkeypatch.setattr(sup.judge.tokenizer, 'decode', lambda *a, **k: 'CAUTION scale=0.3 reason: outage at the exchange')
    sup.reset(when)                                       # the HALT latched until reset
    d = sup.decide({'drawdown': 0.01}, when)              # a well-formed answer is the decision, even where the rules say OK
    assert (d.level, d.scale, d.judge, d.reasons) == ('CAUTION', 0.3, 'llm', ('outage at the exchange',))
    with pytest.raises(SupervisorError, match='is not a text-generation model'):
        LLMJudge(_tiny_llm(tmp_path / 'encoder_only', 'distilbert'))   # an encoder, no text generation
    with pytest.raises(SupervisorError, match='is not a Hugging Face model folder'):
        LLMJudge(tmp_path)
    bad = tmp_path / 'bad.jsonl'; bad.write_text('{"timestamp": "2021-03-01", "text": "x"}\nnot json\n')
    with pytest.raises(SupervisorError, match='line 2'): LLMJudge(model, news=bad)
