"""The monitor's Prometheus metrics, served at http://<[monitor] listen_host>:<metrics_port>/metrics.

    novalite_monitor_detection_seconds        histogram: a host's last heartbeat → its failure declared
    novalite_monitor_fencing_seconds          histogram: fencing, to a confirmed power-off (or its failure)
    novalite_monitor_evacuation_seconds       histogram: one server, evacuate accepted → landed elsewhere
    novalite_monitor_recovery_seconds         histogram: one host, failure handled → every server moved
    novalite_monitor_actions_total{action}    counter: every journaled decision and move, by kind
                                              (fenced, fence_failed, held, landed, gave_up, recovered, …)

They are fed from the journal (each journaled event passes through ``observe``), so the metrics and
``novalite monitor events`` can never disagree.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from novalite.monitor.detection import HostFailed
from novalite.monitor.journal import Event

# Sub-second buckets: the point of the monitor is to act in well under a second (issue 4).
FAST = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
SLOW = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.detection = Histogram("novalite_monitor_detection_seconds",
                                   "A host's last heartbeat until its failure is declared", buckets=FAST,
                                   registry=self.registry)
        self.fencing = Histogram("novalite_monitor_fencing_seconds", "Fencing until the power-off is confirmed",
                                 buckets=SLOW, registry=self.registry)
        self.evacuation = Histogram("novalite_monitor_evacuation_seconds",
                                    "One server: evacuate accepted until it landed elsewhere", buckets=SLOW,
                                    registry=self.registry)
        self.recovery = Histogram("novalite_monitor_recovery_seconds",
                                  "One host: from its failure until every server was moved", buckets=SLOW,
                                  registry=self.registry)
        self.actions = Counter("novalite_monitor_actions", "Decisions and moves, by kind", ["action"],
                               registry=self.registry)
        self._accepted: dict[str, float] = {}  # server → when its evacuation was accepted

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host.strip("[]"), registry=self.registry)

    def detected(self, failure: HostFailed) -> None:
        if failure.last_beat_wall is not None:
            self.detection.observe(max(0.0, failure.detected_wall - failure.last_beat_wall))

    def observe(self, event: Event) -> None:
        self.actions.labels(action=event.kind).inc()
        seconds = event.detail.get("seconds")
        if event.kind in ("fenced", "fence_failed") and isinstance(seconds, int | float):
            self.fencing.observe(seconds)
        elif event.kind == "recovered" and isinstance(seconds, int | float):
            self.recovery.observe(seconds)
        elif event.kind == "evacuation_accepted" and event.server:
            self._accepted.setdefault(event.server, event.at)
        elif event.kind == "landed" and event.server:
            accepted = self._accepted.pop(event.server, None)
            if accepted is not None:
                self.evacuation.observe(max(0.0, event.at - accepted))
