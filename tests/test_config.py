"""Configs as TOML: written by a library, read back exactly, whatever the strings hold."""

import dataclasses

import pytest

from rnnlab.config import CharLMConfig, DenoiseConfig, ForecastConfig, from_toml, to_toml
from rnnlab.errors import UserError


@pytest.mark.parametrize("cls,field", [(CharLMConfig, "text"), (ForecastConfig, "csv")])
def test_a_path_with_a_newline_or_control_character_reads_back(tmp_path, cls, field):
    odd = str(tmp_path / 'odd\nname\x01 "quoted" \\ back\tslash.txt')
    cfg = dataclasses.replace(cls(), **{field: odd})
    path = tmp_path / "config.toml"
    path.write_text(to_toml(cfg, header="a header\nof two lines"), encoding="utf-8")
    assert from_toml(cls, path) == cfg


@pytest.mark.parametrize("cls", [CharLMConfig, DenoiseConfig, ForecastConfig])
def test_every_default_config_round_trips(tmp_path, cls):
    path = tmp_path / "config.toml"
    path.write_text(to_toml(cls()), encoding="utf-8")
    assert from_toml(cls, path) == cls()


def test_a_value_of_the_wrong_type_names_key_flag_and_value(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('seq_len = 2.5\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"seq_len \(--seq-len\) must be an integer, got 2.5"):
        from_toml(CharLMConfig, path)
