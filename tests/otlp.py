"""A real OTLP/HTTP trace receiver for tests: an HTTP server in a thread of the test process that takes
POST /v1/traces, keeps each body as sent and decodes it with OpenTelemetry's own protobuf classes.

    with otlp_receiver() as receiver:        # receiver.url: "http://127.0.0.1:PORT"
        ... ORCH_OTEL_ENDPOINT=receiver.url ...
        spans = receiver.spans()              # every span received: (service name, span)"""

from __future__ import annotations

import contextlib
import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support import free_port, serving


@dataclass
class Receiver:
    url: str
    bodies: list[bytes] = field(default_factory=list)  # each request's body, decompressed, as it came
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # requests to anything but POST /v1/traces
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[tuple[str, Any]]:
        """Every span received so far, with the service.name of the process that sent it."""
        with self.lock:
            requests = list(self.requests)
        found = []
        for request in requests:
            for resource_spans in request.resource_spans:
                service = attribute(resource_spans.resource.attributes, "service.name")
                for scope_spans in resource_spans.scope_spans:
                    found += [(service, span) for span in scope_spans.spans]
        return found

    def raw(self) -> bytes:
        with self.lock:
            return b"".join(self.bodies)


def attribute(attributes: Any, key: str) -> Any:
    """The value of `key` in a protobuf list of KeyValue, as Python (None when absent)."""
    for item in attributes:
        if item.key == key:
            value = item.value
            return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return None


def attributes(span: Any) -> dict[str, Any]:
    return {item.key: attribute(span.attributes, item.key) for item in span.attributes}


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                with receiver.lock:
                    receiver.refused.append(f"POST {self.path} {self.headers.get('Content-Type')}")
                self.send_error(404)
                return
            encoding = self.headers.get("Content-Encoding")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with receiver.lock:
                receiver.bodies.append(body)
                receiver.requests.append(request)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            return None

    return Handler


@contextlib.contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """The receiver on a free local port until the block ends."""
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}")
    with serving(ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver)), "otlp-receiver"):
        yield receiver
