"""``/metrics`` in the Prometheus text format: calls, sessions, RTP, handlers, the API.

The engine calls the hooks of :class:`Metrics` (``call_ended``, ``session_ended``,
``handler_ran``); gauges and RTP totals are read from the live engine when scraped.
Each server has a registry of its own (no process-global state), so several servers can
run in one process (tests) and a future node label fits in.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web import resource

RTP_COUNTERS = ("rx_packets", "tx_packets", "lost", "late", "rx_invalid")


class Metrics:
    """The counters and histograms of one server, and the collector of its live state."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter("voxlab_calls", "Calls ended, by direction and SIP final code",
                             ["direction", "code"], registry=r)
        self.sessions = Counter("voxlab_sessions", "Sessions ended, by finish reason", ["reason"],
                                registry=r)
        self.setup = Histogram("voxlab_call_setup_seconds", "INVITE to confirmed dialog",
                               buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r)
        self.handlers = Histogram("voxlab_handler_seconds", "Time scenario handlers ran",
                                  buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2),
                                  registry=r)
        self.overruns = Counter("voxlab_handler_budget_overruns", "Handlers stopped at their time budget",
                                registry=r)
        self.api = Counter("voxlab_http_requests", "HTTP API requests, by route and status",
                           ["route", "status"], registry=r)
        self._rtp_ended = dict.fromkeys(RTP_COUNTERS, 0)
        r.register(_LiveCollector(self))

    # -- hooks the engine calls
    def call_ended(self, call: Any) -> None:
        self.calls.labels(call.direction, str(call.final_code or 0)).inc()
        if call.connected_at is not None:
            self.setup.observe(max(0.0, call.connected_at - call.created))
        media = getattr(call, "media", None)
        stats = getattr(media, "stats", None)
        if stats:
            for key in RTP_COUNTERS:
                self._rtp_ended[key] += int(stats.get(key, 0) or 0)

    def session_ended(self, session: Any) -> None:
        self.sessions.labels(session.end_reason or "normal").inc()

    def handler_ran(self, seconds: float, overrun: bool) -> None:
        self.handlers.observe(seconds)
        if overrun:
            self.overruns.inc()

    def api_request(self, route: str, status: int) -> None:
        self.api.labels(route, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    """What is read from the running engine at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self):
        engine = self.metrics.engine
        sessions = list(engine.sessions.values())
        live = [c for s in sessions for c in s.calls if not c.ended]
        yield GaugeMetricFamily("voxlab_active_sessions", "Sessions running now", value=len(sessions))
        yield GaugeMetricFamily("voxlab_active_calls", "Calls not ended yet", value=len(live))
        totals = dict(self.metrics._rtp_ended)
        jitter = []
        for call in live:
            stats = getattr(getattr(call, "media", None), "stats", None)
            if not stats:
                continue
            for key in RTP_COUNTERS:
                totals[key] += int(stats.get(key, 0) or 0)
            jitter.append(float(stats.get("jitter_ms", 0) or 0))
        for key in RTP_COUNTERS:
            yield CounterMetricFamily(f"voxlab_rtp_{key}", f"RTP {key.replace('_', ' ')} (every call)",
                                      value=totals[key])
        yield GaugeMetricFamily("voxlab_rtp_jitter_max_ms", "Largest interarrival jitter of a live call",
                                value=max(jitter, default=0.0))


class MetricsResource(resource.Resource):
    """``GET /metrics``."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return self.metrics.render()
