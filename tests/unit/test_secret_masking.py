"""orchestrator/masking.py: every form a secret takes in a text is masked, and nothing else."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

from orchestrator.masking import MASK, PER_CHARACTER, forms, mask_text, mask_value

SECRET = "p@ss w/rd-4711"
SHORT = "p@ss"
SECRETS = forms([SECRET, SHORT, ""])


def test_each_encoding_of_a_secret_is_masked_and_the_longer_secret_first() -> None:
    for text in (
        SECRET,
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        "p@ss%20w/rd-4711",  # as a browser writes it into a URL: only some characters encoded
        "P%40SS+W%2Frd-4711",  # hex and letters in either case
        json.dumps(SECRET)[1:-1],
    ):
        assert mask_text(f"[{text}]", SECRETS) == f"[{MASK}]", text
    assert mask_text("just p@ss here", SECRETS) == f"just {MASK} here"
    assert mask_text("a &amp; b", forms(["a & b"])) == MASK  # HTML-escaped


def test_a_long_secret_is_masked_in_its_whole_forms() -> None:
    long = "k" * (PER_CHARACTER + 1) + " /end"
    masked = mask_text(f"key={quote(long, safe='')}; raw {long}", forms([long]))
    assert masked == f"key={MASK}; raw {MASK}"


def test_ids_times_and_sealed_values_keep_their_text() -> None:
    event = {
        "job_id": "ab47110",
        "at": "2026-01-01T08:47:11Z",
        "step": {"id": "s4711", "error": "PIN 4711 refused", "screenshot_url": "/a/4711"},
        "sealed": "4711",
    }
    masked = mask_value(event, forms(["4711"]), ids=True)
    assert masked == {
        "job_id": "ab47110",
        "at": "2026-01-01T08:47:11Z",
        "step": {"id": "s4711", "error": f"PIN {MASK} refused", "screenshot_url": "/a/4711"},
        "sealed": "4711",
    }
    assert mask_value(event, forms(["4711"]))["job_id"] == f"ab{MASK}0"  # without ids, every string
