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
    path.write_text("seq_len = 2.5\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"seq_len \(--seq-len\) must be an integer, got 2.5"):
        from_toml(CharLMConfig, path)


def test_every_preset_is_a_valid_config_and_a_budget_preset_fixes_its_horizon():
    from rnnlab.config import PRESETS

    for name, preset in PRESETS.items():
        cfg = dataclasses.replace(CharLMConfig(), **preset.settings).validate()
        if name.startswith(("fast-", "best-")):
            # A cosine horizon in steps, measured for the budget the name gives, and the about line says so.
            assert cfg.schedule == "cosine" and cfg.max_steps > 0, name
            assert f"{cfg.max_steps:,} steps" in preset.measured, name
            assert cfg.max_minutes == 0, name  # the step count, not a clock, ends the run: resume stays exact


def test_a_preset_trains_and_flags_beside_it_win(tmp_path, capsys):
    from conftest import make_text
    from runfiles import run_cli

    text = tmp_path / "t.txt"
    text.write_text(make_text(4000), encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "charlm",
        "train",
        "--preset",
        "fast-60s",
        "--text",
        text,
        "--out",
        out,
        "--max-steps",
        "3",
        "--hidden-size",
        "16",
        "--eval-every",
        "3",
        "--sample-length",
        "5",
        "--seq-len",
        "8",
        "--batch-size",
        "2",
        "--quiet",
    )
    assert code == 0, err
    cfg = from_toml(CharLMConfig, out / "config.toml")
    from rnnlab.config import PRESETS

    assert cfg.max_steps == 3 and cfg.hidden_size == 16  # the flags
    assert cfg.embed_size == PRESETS["fast-60s"].settings["embed_size"]  # the preset
