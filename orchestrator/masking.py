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
from urllib.parse import quote, quote_plus

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


#: Secrets longer than this (a key file, say) are masked in their whole encoded forms only: a pattern
#: per character would cost seconds to build and to run on every text the run writes.
PER_CHARACTER = 256


def _whole(secret: str) -> str:
    """A pattern for a long secret: itself, or wholly URL-encoded, JSON- or HTML-escaped."""
    encoded = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1]}
    encoded.add(html.escape(secret))
    return "|".join(re.escape(form) for form in sorted(encoded, key=len, reverse=True))


@functools.lru_cache(maxsize=256)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str]:
    longest_first = sorted(secrets, key=len, reverse=True)
    patterns = ["".join(map(_char, s)) if len(s) <= PER_CHARACTER else _whole(s) for s in longest_first]
    return re.compile("|".join(patterns), re.IGNORECASE)


def mask_text(text: str, secrets: frozenset[str]) -> str:
    return _pattern(secrets).sub(MASK, text) if secrets else text


#: Keys whose values name things rather than say them (ids, statuses, stored paths, times, the
#: app's own URLs, digests, sealed data): a short secret that happens to equal a step id or a year must
#: not break the row or the event that carries it. Their producers mask them where a secret may be in
#: them (a record's id, the page URL of a diagnosis).
IDENTITIES = frozenset(
    {"id", "b_job", "b_step", "b_id", "status", "previous", "action", "kind", "path", "mime_type", "url", "at"}
    | {"sealed", "secret_inputs", "rerun_of", "attempt"}
)
IDENTITY_ENDINGS = ("_id", "_url", "_at", "sha256")


def identity(key: Any) -> bool:
    return isinstance(key, str) and (key in IDENTITIES or key.endswith(IDENTITY_ENDINGS))


def mask_value(value: Any, secrets: frozenset[str], ids: bool = False) -> Any:
    """`value` with every secret inside its strings (mapping keys too) masked; with `ids`, the values
    of identity keys (`identity`) and everything that is not text stay as they are."""
    if not secrets:
        return value
    if isinstance(value, str):
        return mask_text(value, secrets)
    if isinstance(value, dict):
        return {
            mask_value(k, secrets): v if ids and identity(k) else mask_value(v, secrets, ids) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_value(v, secrets, ids) for v in value]
    return value
