"""Experiment configs: every packaged YAML validates; overrides are validated like the file."""
from pathlib import Path
import pytest, yaml
from yooptx.core import ConfigError, PKG_DIR
from yooptx.config import dump_config, load_config


@pytest.mark.parametrize('path', sorted((PKG_DIR / 'configs').glob('*.yaml')), ids=lambda p: p.stem)
def test_packaged_configs_validate_and_round_trip(path):
    cfg = load_config(path)
    assert load_config(yaml.safe_load(dump_config(cfg))) == cfg


def test_packaged_configs_name_real_datasets():
    from yooptx.data import DataCatalog
    names = DataCatalog().names()
    for p in (PKG_DIR / 'configs').glob('*.yaml'):
        assert load_config(p).data.name in names, p


def test_yaml_file_errors(tmp_path):
    p = tmp_path / 'x.yaml'
    p.write_text('data:\n  name: btc_1d\ngate:\n  dsr_minimum: 0.9\n')
    with pytest.raises(ConfigError, match=r"unknown key 'gate.dsr_minimum'; allowed keys in gate: alpha, ci_level, dsr_min"):
        load_config(p)
    p.write_text('- just\n- a list\n')
    with pytest.raises(ConfigError, match='top level must be a mapping'):
        load_config(p)
    p.write_text('gate: {alpha: 2}\n')
    with pytest.raises(ConfigError, match='gate.alpha: must be between 0 and 1'):
        load_config(p)
    with pytest.raises(ConfigError, match='expected KEY=VALUE'):
        load_config(None, ['seeds'])
