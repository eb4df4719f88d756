"""ORCH_LOG_FORMAT=json: what a line looks like, what it says it is about, what it never shows; and the
settings of logs and traces."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from orchestrator import logs
from orchestrator.config import Settings, log_format
from orchestrator.logs import JsonLines
from tests.support import ROOT
from tests.unit.test_logs import writing

API = "orch_" + "A1b2-C3d4_" * 4 + "xyz"
SECRET = "Hunter2-passw0rd"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    with writing("tests.unit.json_logs", JsonLines()) as found:
        yield found


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_object_with_time_level_logger_and_message(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    before = datetime.now(UTC).replace(microsecond=0)
    logger.warning("job %s of %s: %d steps\nsecond line", "j1", "demo", 3)
    [line] = lines(out)
    assert set(line) == {"ts", "level", "logger", "msg"}  # no job, step or worker outside a run
    assert line["level"] == "WARNING" and line["logger"] == "tests.unit.json_logs"
    assert line["msg"] == "job j1 of demo: 3 steps\nsecond line"
    assert isinstance(line["ts"], str) and line["ts"].endswith("Z")
    assert before <= datetime.fromisoformat(line["ts"]) <= datetime.now(UTC)


def test_lines_name_the_job_step_attempt_and_worker_they_are_written_in(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    worker = logs.bind(worker="host-a:41")
    run = logs.bind(job_id="0a1b2c3d", attempt=2)
    logger.info("run")
    step = logs.bind(step_id="open")
    logger.info("step")
    logger.info("told otherwise", extra={"job_id": "other", "step_id": "x"})
    logs.reset(step)
    logger.info("after the step")
    logs.reset(run)
    logger.info("between runs")
    logs.reset(worker)
    logger.info("outside")
    found = [{k: v for k, v in line.items() if k not in ("ts", "level", "logger")} for line in lines(out)]
    assert found == [
        {"msg": "run", "job_id": "0a1b2c3d", "attempt": 2, "worker": "host-a:41"},
        {"msg": "step", "job_id": "0a1b2c3d", "step_id": "open", "attempt": 2, "worker": "host-a:41"},
        {"msg": "told otherwise", "job_id": "other", "step_id": "x", "attempt": 2, "worker": "host-a:41"},
        {"msg": "after the step", "job_id": "0a1b2c3d", "attempt": 2, "worker": "host-a:41"},
        {"msg": "between runs", "worker": "host-a:41"},
        {"msg": "outside"},
    ]


def test_a_traceback_is_in_exc_on_the_same_line_without_tokens(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    try:
        raise ValueError(f"bad token {API}")
    except ValueError:
        logger.exception("failed on /api/v1/hooks/%s", API)
    [line] = lines(out)
    assert line["msg"] == "failed on /api/v1/hooks/orch_[redacted]"
    assert isinstance(line["exc"], str)
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("ValueError: bad token orch_[redacted]")
    assert API not in out.getvalue() and out.getvalue().count("\n") == 1


@pytest.mark.parametrize("form", ["json", "text"])
def test_a_runs_secret_inputs_are_masked_in_its_lines_in_both_formats(form: str) -> None:
    formatter = JsonLines() if form == "json" else logging.Formatter(logs.FORMAT)
    with writing(f"tests.unit.json_logs.{form}", formatter) as (logger, out):
        run = logs.bind(job_id="j9", secrets=frozenset({SECRET}))
        try:
            logger.warning("step said %s", f"no field matches {SECRET}")
            logger.warning("encoded: %s", SECRET.replace("-", "%2D"))
            logger.warning("as an object: %s", {"password": SECRET})
            try:
                raise RuntimeError(f"the page showed {SECRET}")
            except RuntimeError:
                logger.exception("a bug")
        finally:
            logs.reset(run)
    text = out.getvalue()
    assert SECRET.lower() not in text.lower() and "%2D" not in text
    assert text.count("********") == 4
    if form == "json":
        assert all(json.loads(line)["job_id"] == "j9" for line in text.splitlines())


def test_a_process_configured_for_json_writes_only_json_to_standard_error() -> None:
    """uvicorn's and arq's loggers, Python's warnings and an uncaught exception: every line one object."""
    program = (
        "import logging, warnings\n"
        "from orchestrator import logs\n"
        "logs.configure(logging.INFO, 'json')\n"
        "logging.getLogger('uvicorn.access').info('%s - \"%s %s HTTP/%s\" %d', '127.0.0.1:1', 'GET', "
        f"'/api/v1/hooks/{API}', '1.1', 200)\n"
        "logging.getLogger('arq.worker').info('Starting worker for %d functions', 1)\n"
        "logging.getLogger('tests').debug('not at INFO')\n"
        "warnings.warn('an old thing')\n"
        "raise ValueError('boom')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    found = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["logger"], line["level"]) for line in found] == [
        ("uvicorn.access", "INFO"),
        ("arq.worker", "INFO"),
        ("py.warnings", "WARNING"),
        ("orchestrator", "CRITICAL"),
    ]
    assert found[0]["msg"] == '127.0.0.1:1 - "GET /api/v1/hooks/orch_[redacted] HTTP/1.1" 200'
    assert "an old thing" in str(found[2]["msg"])
    assert str(found[3]["exc"]).endswith("ValueError: boom")


def test_text_stays_the_default_and_json_is_the_other_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_LOG_FORMAT", raising=False)
    assert log_format() == "text"
    monkeypatch.setenv("ORCH_LOG_FORMAT", " JSON ")
    assert log_format() == "json"
    monkeypatch.setenv("ORCH_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="ORCH_LOG_FORMAT must be text or json"):
        log_format()


def test_a_bad_log_format_stops_a_command_naming_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "validate", "x.yaml"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "ORCH_LOG_FORMAT": "yaml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "ORCH_LOG_FORMAT must be text or json; it is 'yaml'." in done.stderr


@pytest.mark.parametrize(
    "value",
    ["127.0.0.1:4318", "ftp://collector:4318", "http://", "http://collector:99999", "collector"],
)
def test_a_bad_otel_endpoint_fails_at_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ORCH_SECRET_KEY", "k")
    monkeypatch.setenv("ORCH_OTEL_ENDPOINT", value)
    with pytest.raises(ValueError, match="ORCH_OTEL_ENDPOINT must be an OTLP/HTTP collector's http:// or https://"):
        Settings.from_env()


def test_an_otel_endpoint_with_credentials_is_refused_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_SECRET_KEY", "k")
    monkeypatch.setenv("ORCH_OTEL_ENDPOINT", "https://user:pa55word@collector:4318")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_HEADERS") as refused:
        Settings.from_env()
    assert "pa55word" not in str(refused.value)


def test_a_bad_otel_endpoint_stops_a_process_naming_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "worker"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "ORCH_SECRET_KEY": "k", "ORCH_OTEL_ENDPOINT": "grpc://collector:4317"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "ORCH_OTEL_ENDPOINT must be an OTLP/HTTP collector's http:// or https:// address" in done.stderr
    assert "Traceback" not in done.stderr


def test_log_format_and_otel_endpoint_reach_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_SECRET_KEY", "k")
    monkeypatch.setenv("ORCH_LOG_FORMAT", "json")
    monkeypatch.setenv("ORCH_OTEL_ENDPOINT", "https://collector.example:4318/")
    settings = Settings.from_env()
    assert (settings.log_format, settings.otel_endpoint) == ("json", "https://collector.example:4318")
    child = settings.environment()
    assert child["ORCH_LOG_FORMAT"] == "json" and child["ORCH_OTEL_ENDPOINT"] == "https://collector.example:4318"
    for name, value in child.items():
        monkeypatch.setenv(name, value)
    again = Settings.from_env()
    assert (again.log_format, again.otel_endpoint) == ("json", "https://collector.example:4318")


def test_nothing_of_opentelemetry_is_loaded_when_tracing_is_off() -> None:
    program = (
        "import sys\n"
        "import orchestrator.cli, orchestrator.scheduler, orchestrator.tracing, web.app, worker.main\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
