"""Fire times across daylight-saving changes, with fixed clocks (Europe/Berlin: clocks go forward
at 02:00 on 2026-03-29 and back at 03:00 on 2026-10-25; America/New_York on 2026-03-08 / 11-01)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orchestrator import cron

BERLIN = ZoneInfo("Europe/Berlin")


def local(*args: int, tz: ZoneInfo = BERLIN, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold).astimezone(UTC)


def fires(expression: str, start: datetime, end: datetime, timezone: str = "Europe/Berlin") -> list[datetime]:
    first = cron.next_after(expression, timezone, start)
    return cron.between(expression, timezone, first, end)


def as_berlin(times: list[datetime]) -> list[str]:
    return [t.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for t in times]


def test_daily_job_in_the_skipped_hour_runs_once_when_the_clocks_jump() -> None:
    times = fires("30 2 * * *", local(2026, 3, 27, 12), local(2026, 3, 30, 12))
    assert as_berlin(times) == ["03-28 02:30 CET", "03-29 03:00 CEST", "03-30 02:30 CEST"]


def test_daily_job_in_the_repeated_hour_runs_once() -> None:
    times = fires("30 2 * * *", local(2026, 10, 23, 12), local(2026, 10, 26, 12))
    assert as_berlin(times) == ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET"]


@pytest.mark.parametrize("expression", ["0 * * * *", "@hourly"])
def test_hourly_job_runs_every_real_hour_across_both_changes(expression: str) -> None:
    spring = fires(expression, local(2026, 3, 29, 0, 30), local(2026, 3, 29, 5, 30))
    assert as_berlin(spring) == ["03-29 01:00 CET", "03-29 03:00 CEST", "03-29 04:00 CEST", "03-29 05:00 CEST"]
    autumn = fires(expression, local(2026, 10, 25, 0, 30), local(2026, 10, 25, 4, 30))
    assert [t.isoformat() for t in autumn] == [
        "2026-10-24T23:00:00+00:00",  # 01:00 CEST
        "2026-10-25T00:00:00+00:00",  # 02:00 CEST
        "2026-10-25T01:00:00+00:00",  # 02:00 CET, the second time the clock shows 2
        "2026-10-25T02:00:00+00:00",  # 03:00 CET
        "2026-10-25T03:00:00+00:00",  # 04:00 CET
    ]
    assert all(b - a == timedelta(hours=1) for a, b in zip(autumn, autumn[1:], strict=False))


def test_every_fifteen_minutes_never_doubles_or_goes_back() -> None:
    for start in (local(2026, 3, 29, 0), local(2026, 10, 25, 0)):
        times = fires("*/15 * * * *", start, start + timedelta(hours=5))
        assert times == sorted(set(times))
        gaps = {b - a for a, b in zip(times, times[1:], strict=False)}
        assert gaps == {timedelta(minutes=15)}


def test_next_after_from_inside_the_changes() -> None:
    # asked from inside the repeated hour (the second 02:10), a daily 02:30 job is done for that day
    second_pass = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)
    assert as_berlin([cron.next_after("30 2 * * *", "Europe/Berlin", second_pass)]) == ["10-26 02:30 CET"]
    first_pass = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=0)
    assert as_berlin([cron.next_after("30 2 * * *", "Europe/Berlin", first_pass)]) == ["10-25 02:30 CEST"]


def test_new_york_daily_job() -> None:
    ny = ZoneInfo("America/New_York")
    times = fires("30 2 * * *", local(2026, 3, 7, 12, tz=ny), local(2026, 3, 9, 12, tz=ny), "America/New_York")
    assert [t.astimezone(ny).strftime("%a %H:%M %Z") for t in times] == ["Sun 03:00 EDT", "Mon 02:30 EDT"]


def test_seconds_field_and_utc() -> None:
    start = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    times = fires("* * * * * */5", start, start + timedelta(seconds=20), "UTC")
    assert [t.second for t in times] == [5, 10, 15, 20]


@pytest.mark.parametrize(
    ("expression", "timezone", "message"),
    [
        ("bad", "UTC", "is not a cron expression"),
        ("0 0 30 2 *", "UTC", "never fires"),
        ("0 6 * * *", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_schedules_are_named(expression: str, timezone: str, message: str) -> None:
    with pytest.raises(cron.CronError, match=message):
        cron.check(expression, timezone)
