"""The command lines read well: help shows defaults and variable names without markup, one
spelling of --no-color (--no-colour too), cbs-sim --version, a did-you-mean for a typo, and
the README lists every subcommand."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__
from agent.cli import SETTINGS_OPTIONS, build_parser
from agent.config import AgentSettings
from simulators.cli import build_parser as build_sim_parser

ROOT = Path(__file__).resolve().parents[2]
MARKUP = ("``", "%(", "**", ":class:", ":func:")


def _parsers(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


ALL = _parsers(build_parser(), "cbs-agent") + _parsers(build_sim_parser(), "cbs-sim")


@pytest.mark.parametrize("path,parser", ALL, ids=[p for p, _ in ALL])
def test_help_has_no_raw_markup(path: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    for mark in MARKUP:
        assert mark not in text, f"{path} --help shows {mark!r}"


def test_settings_options_show_their_variable_and_true_default() -> None:
    text = dict(ALL)["cbs-agent run"].format_help().replace("\n", " ")
    text = re.sub(r"\s+", " ", text)
    for flag, _metavar, _help, default in SETTINGS_OPTIONS:
        name = flag.removeprefix("--").replace("-", "_")
        assert f"env CBS_{name.upper()}" in text, flag
        field = AgentSettings.model_fields[name]
        if default is None:
            assert field.is_required() or field.default is None, flag
        else:
            assert str(field.default) == default, (flag, field.default, default)
            assert f"default {default};" in text, flag


def test_no_color_has_one_spelling_and_the_british_alias() -> None:
    parser = build_parser()
    assert parser.parse_args(["watch", "--no-color"]).no_color is True
    assert parser.parse_args(["watch", "--no-colour"]).no_color is True
    assert parser.parse_args(["watch"]).no_color is False


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)


def test_cbs_sim_version() -> None:
    done = _run("-m", "simulators", "--version")
    assert (done.returncode, done.stdout) == (0, f"cbs-sim {__version__}\n")


def test_did_you_mean_for_a_mistyped_subcommand() -> None:
    done = _run("-m", "agent", "decod", "x.log")
    assert done.returncode == 2
    assert "did you mean 'decode'?" in done.stderr and len(done.stderr.splitlines()) == 1
    done = _run("-m", "agent", "schema", "reminders")
    assert "did you mean 'reminder'?" in done.stderr
    done = _run("-m", "simulators", "seriall")
    assert done.returncode == 2 and "did you mean 'serial'?" in done.stderr
    done = _run("-m", "agent", "zzzz")
    assert "did you mean" not in done.stderr  # nothing close: no guess


def test_readme_lists_every_subcommand() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    for path, parser in ALL:
        words = path.split()
        if len(words) == 1:
            continue
        assert f"`{' '.join(words)}" in section or f"`{words[0]} {' '.join(words[1:])}" in \
            section, f"README's command line section does not list `{path}`"
        for action in parser._actions:
            if action.dest == "payload":
                for choice in action.choices:
                    assert re.search(rf"`cbs-agent schema [^`]*\b{choice}\b", section), choice
