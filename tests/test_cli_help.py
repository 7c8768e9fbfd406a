"""The command line explains itself: every command and flag has help, the commands are grouped."""

import argparse
import re

import pytest

from rnnlab import __version__
from rnnlab.cli import COMMAND_GROUPS, COMMANDS, build_parser, main


def _parsers(parser, path=("rnnlab",)):
    """(command path, parser) for the top level and every sub-command, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_flag_and_command_has_help():
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{' '.join(path)} {a.dest}" for a in action._choices_actions if not a.help]
            elif action.help is None or not re.sub(r"\(default [^)]*\)", "", action.help).strip():
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_every_command_is_listed_in_a_group_and_runs_somewhere():
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    grouped = [name for names in COMMAND_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(top.choices)
    for path, sub in _parsers(parser):
        if len(path) >= 2 and not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            key = (path[1], path[2]) if len(path) == 3 else (path[1], None)
            assert key in COMMANDS, key


def test_help_and_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rnnlab {__version__}"
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "tasks:" in text and "tools:" in text
    assert text.index("charlm") < text.index("tools:") < text.index("sweep")
    for path, _ in _parsers(build_parser()):
        assert main([*path[1:], "--help"]) == 0, path
        assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["charlm"], ["nonsense"], ["charlm", "train", "--hidden-size", "x"]])
def test_usage_mistakes_are_one_line(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_every_config_flag_shows_the_config_default_and_the_registry_choices():
    """Walk every flag of every command that takes a task's settings: the default its help shows
    is the config class's, and its choices are the registry's (config.choices_of)."""
    from rnnlab.config import CharLMConfig, DenoiseConfig, ForecastConfig, choices_of

    configs = {"charlm": CharLMConfig, "denoise": DenoiseConfig, "forecast": ForecastConfig}
    checked = 0
    for path, parser in _parsers(build_parser()):
        task = next((p for p in path if p in configs), None)
        if task is None or not ({"train", "search", "sweep"} & set(path)):
            continue  # sample, eval, predict: their flags are not run settings
        cls = configs[task]
        defaults, choices = cls(), choices_of(cls)
        for action in parser._actions:
            if not action.option_strings or not hasattr(defaults, action.dest):
                continue
            shown = re.search(r"\(default ([^)]*)\)\s*$", action.help or "")
            value = getattr(defaults, action.dest)
            if value != "":
                assert shown and shown.group(1) == str(value), (path, action.dest, action.help)
            if action.dest in choices:
                assert tuple(action.choices) == tuple(choices[action.dest]), (path, action.dest)
            elif action.choices is not None:
                raise AssertionError(f"{path} --{action.dest}: choices typed outside the registry")
            checked += 1
    assert checked > 100  # train, search and sweep verbs of three tasks
