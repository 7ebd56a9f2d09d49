"""Every subcommand's --help: each option has help text, shows its default at most once, in one
style (the formatter in bptt.cli), and no help text points at an issue number."""

import argparse
import re

import pytest

from bptt.cli import COMMANDS, HelpFormatter, build_parser, main


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def option_help(parser, action) -> str:
    """The help text --help prints for this option (defaults filled in), on one line."""
    return " ".join(parser._get_formatter()._expand_help(action).split())


NAMES = {"importer": "import"}          # module name -> subcommand name


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_one_default(command):
    parser = subparsers()[NAMES.get(command, command)]
    assert issubclass(parser.formatter_class, HelpFormatter), command
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        text = option_help(parser, action)
        assert text.strip(), f"bptt {command} {name} has no help text"
        assert len(re.findall(r"default", text, flags=re.I)) <= 1, f"bptt {command} {name}: {text}"
        assert not re.search(r"\[[^\]]*\]\s*(\(default|$)", text), f"bptt {command} {name}: hand-written [..]: {text}"
        assert "default: None" not in text, f"bptt {command} {name}: {text}"
        assert not re.search(r"issue\s*#?\d", text, flags=re.I), f"bptt {command} {name}: {text}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_prints_and_mentions_no_issue(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([NAMES.get(command, command), "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert not re.search(r"issue\s*#?\d", out, flags=re.I)
    assert "(default: None)" not in out


def test_train_shows_the_values_it_uses():
    """The defaults --help shows for bptt train are the ones a run gets (its argparse defaults are None)."""
    from bptt.cli.train import DEFAULTS

    parser = subparsers()["train"]
    for action in parser._actions:
        if action.dest in DEFAULTS and DEFAULTS[action.dest] not in (None, False):
            assert f"(default: {DEFAULTS[action.dest]})" in option_help(parser, action), action.dest


def test_the_formatter_shows_a_default_once():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--a", type=int, default=40, help="probe length")
    parser.add_argument("--b", default=None, help="nothing to show")
    parser.add_argument("--c", action="store_true", help="a flag")
    parser.add_argument("--d", default=0.01, help="share of 100%% at lag 0")
    text = " ".join(parser.format_help().split())
    assert "probe length (default: 40)" in text
    assert "nothing to show" in text and "nothing to show (default" not in text
    assert "a flag (default" not in text
    assert "share of 100% at lag 0 (default: 0.01)" in text


def test_experiment_out_defaults_like_the_other_commands(tmp_path, monkeypatch, capsys):
    import bptt.experiments.vanishing as vanishing

    seen = {}
    monkeypatch.setattr(vanishing, "run_vanishing", lambda **kwargs: seen.update(kwargs))
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "vanishing", "--quick"]) == 0
    assert seen["out_dir"] == "runs/vanishing"
    out = capsys.readouterr().out
    assert "runs/vanishing/vanishing.json" in out and "runs/vanishing/vanishing.png" in out
    help_text = " ".join(subparsers()["experiment"].format_help().split())
    assert "vanishing.json, vanishing.md and vanishing.png" in help_text
