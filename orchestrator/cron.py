"""Fire times of a cron expression in a time zone, safe across daylight-saving changes.

croniter walks local wall-clock times; this module maps each one to an instant:
- a time that occurs once is that instant;
- a time the clocks skip (spring forward) fires once, when the clocks jump (the end of the gap),
  so a daily 02:30 job still runs that day, and every skipped minute of a frequent job is one run;
- a time that occurs twice (fall back) fires once, at its first occurrence, unless the expression
  runs every hour (hour field `*` or `*/n`, or `@hourly`): such a job runs by the clock in both hours.

A cron of six fields has seconds as the last one (croniter's convention): `* * * * * */5`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

#: No time zone moves its clocks by more than this at once.
MAX_SHIFT = timedelta(hours=3)


class CronError(ValueError):
    """The expression or the time zone is not usable; the message names which."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from None


def check(expression: str, timezone: str = "UTC") -> None:
    """Raise CronError unless the expression is valid and fires within the next five years."""
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise CronError(f"{expression!r} is not a cron expression (five fields, or six with seconds last)")
    tz = zone(timezone)
    start = datetime.now(UTC)
    try:
        croniter(expression, start.astimezone(tz).replace(tzinfo=None), max_years_between_matches=5).get_next(datetime)
    except CroniterBadDateError:
        raise CronError(f"{expression!r} never fires") from None


def _hourly(expression: str) -> bool:
    fields = expression.split()
    if len(fields) == 1:  # croniter's aliases: of @yearly ... @hourly only @hourly runs every hour
        return fields[0].lower() == "@hourly"
    return len(fields) >= 2 and fields[1].startswith("*")


def _instants(naive: datetime, tz: ZoneInfo, hourly: bool) -> list[datetime]:
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:  # occurs twice
        return [first.astimezone(UTC), second.astimezone(UTC)] if hourly else [first.astimezone(UTC)]
    return [_gap_end(second.astimezone(UTC), first.astimezone(UTC), tz)]


def _gap_end(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The instant in (low, high] when the clocks jumped forward (whole seconds)."""
    after = high.astimezone(tz).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return low + timedelta(seconds=hi)


def _near_change(instant: datetime, tz: ZoneInfo) -> bool:
    offsets = {(instant + d).astimezone(tz).utcoffset() for d in (-MAX_SHIFT, timedelta(0), MAX_SHIFT)}
    return len(offsets) > 1


def next_after(expression: str, timezone: str, after: datetime) -> datetime:
    """The first fire time strictly after `after` (an aware datetime), in UTC."""
    tz, hourly = zone(timezone), _hourly(expression)
    local = after.astimezone(tz).replace(tzinfo=None)
    if not _near_change(after, tz):
        naive = croniter(expression, local).get_next(datetime)
        return min(_instants(naive, tz, hourly))
    # Near a change local times are not in the order of their instants: look at every candidate
    # from before the change until one is later than the best found by more than any shift.
    candidates = croniter(expression, local - MAX_SHIFT)
    best: datetime | None = None
    while True:
        naive = candidates.get_next(datetime)
        if best is not None and naive > best.astimezone(tz).replace(tzinfo=None) + MAX_SHIFT:
            return best
        for instant in _instants(naive, tz, hourly):
            if instant > after and (best is None or instant < best):
                best = instant


def between(expression: str, timezone: str, first: datetime, until: datetime, limit: int = 1000) -> list[datetime]:
    """Fire times from `first` (itself a fire time) up to and including `until`, at most `limit`."""
    times: list[datetime] = []
    current = first
    while current <= until and len(times) < limit:
        times.append(current)
        current = next_after(expression, timezone, current)
    return times
