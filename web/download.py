"""An artifact file as an HTTP answer: streamed from the artifact store as it is read (never whole in
memory, whichever store), or one byte range of it (a video's seek), with the headers every artifact
answer carries."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from orchestrator.artifacts import CHUNK, ArtifactStore
from orchestrator.errors import ArtifactNotFound

# one range of bytes: `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX` (ASCII digits, 20 at most)
_RANGE = re.compile(r"bytes=(\d{0,20})-(\d{0,20})", re.ASCII | re.IGNORECASE)
#: The answer to a range that starts past the file's end (416).
UNSATISFIABLE = (-1, -1)


async def artifact_file(request: Request, store: ArtifactStore, row: Any, inline: bool) -> Response:
    """The file of an artifact row: shown inline or as an attachment, never sniffed, never cached."""
    headers = {
        "Content-Disposition": _disposition("inline" if inline else "attachment", row["name"]),
        # no-store: a file may hold what only signed-in people may see; no cache keeps it after sign-out
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Accept-Ranges": "bytes",
    }
    etag = f'"{row["sha256"]}"' if row["sha256"] else None  # the content's hash: the same bytes, the same tag
    if etag:
        headers["ETag"] = etag
    wanted = byte_range(request.headers.get("range"), request.headers.get("if-range"), etag, row["size"])
    if wanted == UNSATISFIABLE:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{row['size']}"})
    start, end = wanted or (0, None)
    reading = await store.open(row["path"], start, end)
    if reading is None:
        raise ArtifactNotFound(f"The file of artifact {row['id']} is missing from the artifact store.")
    headers["Content-Length"] = str(reading.length)
    if wanted:
        headers["Content-Range"] = f"bytes {reading.start}-{reading.start + reading.length - 1}/{reading.size}"
    status = 206 if wanted else 200
    if request.method == "HEAD":  # the headers alone; the reading is closed unread
        await reading.chunks.aclose()
        return Response(status_code=status, headers=headers, media_type=row["mime_type"])
    if reading.length <= CHUNK:
        # one chunk goes out as one message, as FileResponse sends a small file: the GZip middleware
        # then leaves a small one as it is, Content-Length and all
        content = b"".join([chunk async for chunk in reading.chunks])
        return Response(content, status_code=status, headers=headers, media_type=row["mime_type"])
    return StreamingResponse(reading.chunks, status_code=status, headers=headers, media_type=row["mime_type"])


def byte_range(header: str | None, if_range: str | None, etag: str | None, size: int) -> tuple[int, int] | None:
    """The one range of bytes (start, end exclusive) the request asks for; None for the whole file: no
    Range, one that is not understood or names several ranges (sent whole, as RFC 9110 allows), or an
    If-Range for another version; UNSATISFIABLE when it starts past the end."""
    if header is None or (if_range is not None and if_range != etag):
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None or found[1] == found[2] == "":
        return None
    first, last = found[1], found[2]
    if not first:  # the last `last` bytes
        suffix = int(last)
        return (max(0, size - suffix), size) if suffix and size else UNSATISFIABLE
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return UNSATISFIABLE
    return start, min(int(last) + 1, size) if last else size


def _disposition(kind: str, filename: str) -> str:
    """As Starlette's FileResponse writes it: a plain name quoted, any other as RFC 5987 UTF-8."""
    quoted = quote(filename)
    return f"{kind}; filename*=utf-8''{quoted}" if quoted != filename else f'{kind}; filename="{filename}"'
