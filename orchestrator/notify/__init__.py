"""Notifications (issue 19): which messages a job's events make (`rules`), the persisted outbox they wait
in (`outbox`), what they say (`messages`), how they go out (`send`), and the loop in the scheduler
process that does it all (`notifier`)."""
