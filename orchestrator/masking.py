"""Secret inputs never leave a run in the clear: every text is masked, in every form a secret takes.

A secret can reach a text as itself or encoded, wholly or in part: URL-encoded by a template's
`urlencode`, by a browser that encodes only some characters of a URL, JSON- or HTML-escaped. Each
character of a secret is matched in any of those forms, so every mix is masked. Longer secrets are
matched first, so a secret that contains another is masked whole rather than leaving its rest behind.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "********"


def forms(secrets: Iterable[Any]) -> frozenset[str]:
    """The secrets as text, empty ones left out (masking finds their encoded forms itself)."""
    return frozenset(text for text in map(str, secrets) if text)


def _char(c: str) -> str:
    """A pattern for one character of a secret: itself, percent-encoded (any case), `+` for a space,
    JSON-escaped or HTML-escaped."""
    forms = {re.escape(c), "".join(f"%{byte:02x}" for byte in c.encode())}
    forms.add(re.escape(json.dumps(c)[1:-1]))
    forms.add(re.escape(html.escape(c)))
    if c == " ":
        forms.add(r"\+")
    if c == "'":
        forms.add("&#39;")
    return "(?:" + "|".join(sorted(forms, key=len, reverse=True)) + ")"


@functools.lru_cache(maxsize=256)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str]:
    longest_first = sorted(secrets, key=len, reverse=True)
    return re.compile("|".join("".join(map(_char, secret)) for secret in longest_first), re.IGNORECASE)


def mask_text(text: str, secrets: frozenset[str]) -> str:
    return _pattern(secrets).sub(MASK, text) if secrets else text


#: Keys whose values name things rather than say them (ids, statuses, stored paths, times, the
#: app's own URLs, sealed data): a short secret that happens to equal a step id or a year must not
#: break the row or the event that carries it. Their producers never put a secret in them.
IDENTITIES = frozenset(
    {"id", "job_id", "step_id", "b_job", "b_step", "b_id", "status", "previous", "action", "kind", "path", "sha256"}
    | {"at", "created_at", "started_at", "finished_at", "processed_at", "requested_at", "decided_at", "updated_at"}
    | {"screenshot_url", "sealed", "secret_inputs"}
)


def mask_value(value: Any, secrets: frozenset[str], keep: frozenset[str] = frozenset()) -> Any:
    """`value` with every secret inside its strings (mapping keys too) masked; the values of mapping
    keys in `keep` and everything that is not text stay as they are."""
    if not secrets:
        return value
    if isinstance(value, str):
        return mask_text(value, secrets)
    if isinstance(value, dict):
        return {mask_value(k, secrets): v if k in keep else mask_value(v, secrets, keep) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v, secrets, keep) for v in value]
    return value
