"""The notification settings: each bad value stops the start with an error naming the variable (never
the value, when it may hold a password), and the settings reach child processes unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import Settings
from orchestrator.errors import RunbookError
from orchestrator.runbooks.loader import parse


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("ORCH_SECRET_KEY", "k")
    monkeypatch.setenv("ORCH_DATA_DIR", str(tmp_path))
    return monkeypatch


def test_the_default_rules_are_read_and_passed_on(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("ORCH_NOTIFY_DEFAULT", "failed, sla_missed:ops ; approval_requested:finance")
    environ.setenv("ORCH_SMTP_URL", "smtp://robot:pa%40ss@mail.example.com:587")
    environ.setenv("ORCH_MAIL_FROM", "robots@example.com")
    settings = Settings.from_env()
    assert settings.notify_default == ((("failed", "sla_missed"), "ops"), (("approval_requested",), "finance"))
    assert "pa%40ss" not in repr(settings)
    passed = settings.environment()
    assert passed["ORCH_NOTIFY_DEFAULT"] == "failed,sla_missed:ops;approval_requested:finance"
    assert passed["ORCH_SMTP_URL"] == "smtp://robot:pa%40ss@mail.example.com:587"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("ORCH_NOTIFY_DEFAULT", "failed", "must be EVENTS:CHANNEL"),
        ("ORCH_NOTIFY_DEFAULT", "exploded:ops", "names no such event 'exploded'"),
        ("ORCH_SMTP_URL", "http://user:hunter2@mail:25", "ORCH_SMTP_URL must be smtp://"),
        ("ORCH_SMTP_URL", "smtp://user:hunter2@mail:25/path", "ORCH_SMTP_URL must be the server's address alone"),
        ("ORCH_MAIL_FROM", "not an address", "ORCH_MAIL_FROM must be one mail address"),
        ("ORCH_NOTIFY_RETRY_S", "soon", "ORCH_NOTIFY_RETRY_S must be a number of seconds"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(
    environ: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    environ.setenv(variable, value)
    with pytest.raises(ValueError, match=says) as raised:
        Settings.from_env()
    assert "hunter2" not in str(raised.value)


def test_a_runbook_names_known_events_and_positive_limits() -> None:
    good = (
        "name: x\nnotify:\n  - {on: [failed], channel: ops}\nsettings: {sla: {running: 60}}\n"
        "steps:\n  - {action: sleep, seconds: 0}\n"
    )
    runbook = parse(good, "x.yaml")
    assert runbook.notify[0].on == ["failed"] and runbook.settings.sla is not None
    assert runbook.settings.sla.limits() == {"running": 60}
    for bad, where in (
        (good.replace("[failed]", "[exploded]"), "x.yaml:3"),
        (good.replace("running: 60", "running: -1"), "x.yaml:4"),
        (good.replace("running: 60", "finishing: 60"), "x.yaml:4"),
    ):
        with pytest.raises(RunbookError, match=where):
            parse(bad, "x.yaml")
