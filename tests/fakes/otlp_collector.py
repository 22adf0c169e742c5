"""A fake OpenTelemetry collector on 127.0.0.1: OTLP over HTTP, as the SDK's
``opentelemetry-exporter-otlp-proto-http`` exporters send it (``POST /v1/traces``,
``/v1/metrics``, protobuf bodies). It keeps each body it gets and answers as a collector does
(200, an empty protobuf ``Export*ServiceResponse``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeCollector:
    received: dict[str, list[bytes]] = field(default_factory=lambda: {"traces": [], "metrics": []})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/{signal}", self.export)
        return app

    async def export(self, request: web.Request) -> web.StreamResponse:
        signal = request.match_info["signal"]
        if signal not in self.received:
            raise web.HTTPNotFound()
        self.received[signal].append(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")
