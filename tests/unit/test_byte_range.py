"""The one byte range an artifact download serves (web/download.py): what a video's seek asks for is
answered, anything else gets the whole file (as RFC 9110 allows), and a range past the end is a 416."""

from __future__ import annotations

import pytest

from web.download import UNSATISFIABLE, byte_range

TAG = '"abc"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-", (0, 100)),
        ("bytes=10-19", (10, 20)),
        ("bytes=90-500", (90, 100)),
        ("bytes=-5", (95, 100)),
        ("bytes=-500", (0, 100)),
        ("BYTES=1-1", (1, 2)),
        ("bytes=100-", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("bytes=5-1", None),
        ("bytes=-", None),
        ("items=0-5", None),
        ("bytes=+1-5", None),
        ("bytes=١-٥", None),  # digits of other scripts are not digits here
        (f"bytes={'9' * 5000}-", None),  # no giant numbers
    ],
)
def test_a_range_header_is_read_as_one_range_or_the_whole_file(header: str, expected: object) -> None:
    assert byte_range(header, None, TAG, 100) == expected


def test_no_range_or_an_if_range_for_another_version_is_the_whole_file() -> None:
    assert byte_range(None, None, TAG, 100) is None
    assert byte_range("bytes=0-9", '"other"', TAG, 100) is None
    assert byte_range("bytes=0-9", TAG, TAG, 100) == (0, 10)
    assert byte_range("bytes=0-9", TAG, None, 100) is None
    assert byte_range("bytes=0-", None, TAG, 0) == UNSATISFIABLE
