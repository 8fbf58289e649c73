"""The operator's command line: boolean flags from the environment mean what they say."""

from __future__ import annotations

import pytest
from testapp_operator.__main__ import FALSE, TRUE, parse

FLAGS = {"TESTAPP_VERBOSE": "verbose", "TESTAPP_STANDALONE": "standalone"}


@pytest.mark.parametrize("variable", FLAGS)
@pytest.mark.parametrize("value", [*TRUE, "TRUE", "Yes", " on "])
def test_a_true_word_turns_the_flag_on(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(parse([]), FLAGS[variable]) is True


@pytest.mark.parametrize("variable", FLAGS)
@pytest.mark.parametrize("value", [*FALSE, "FALSE", "No", "OFF"])
def test_a_false_word_or_empty_leaves_the_flag_off(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(parse([]), FLAGS[variable]) is False


@pytest.mark.parametrize("variable", FLAGS)
def test_an_unset_flag_is_off(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.delenv(variable, raising=False)
    assert getattr(parse([]), FLAGS[variable]) is False


@pytest.mark.parametrize("variable", FLAGS)
@pytest.mark.parametrize("value", ["2", "enabled", "t", "nope"])
def test_any_other_value_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit:
        parse([])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert f"{variable}={value!r} is not a boolean" in error


def test_the_command_line_flag_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTAPP_STANDALONE", "false")
    assert parse(["--standalone"]).standalone is True
