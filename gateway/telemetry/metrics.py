"""Prometheus metrics: what the gateway counts per exchange, and the /metrics document.

Per exchange the pipeline records one outcome and the upstream's time. Those two are
counted in plain Python lists in this process (`_Tally`: a bisect and two additions) and
handed to prometheus_client once a second and before each scrape: in multi-process mode
every prometheus_client increment is an mmap write under a lock, about 2 µs, and a
histogram observation is two of them (bench/metrics.py measures both ways).

With several workers (`lgsp serve --workers N`) the parent sets PROMETHEUS_MULTIPROC_DIR
before the workers start; each worker writes its values to its own mmap files there and
whichever worker answers a scrape sums them all. Gauges of one worker (spool depth,
breaker state) carry an `instance` label so they are not summed into each other.

Label values are bounded: a service label is only ever a configured service's address
(unknown addresses are "-"), a client label only an authenticated client's code.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNKNOWN = "-"
# Seconds; an exchange through the gateway is mostly its upstream's time.
EXCHANGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# The *_created series only double what a scrape holds.
disable_created_metrics()  # type: ignore[no-untyped-call]

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
ServiceKey = tuple[str, str, str]  # provider, service code, version
_ExchangeKey = tuple[ServiceKey | None, str | None, str]


class GatewayMetrics:
    """One per process. `multiprocess` is decided by the environment at start."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multi-process mode values live in the mmap files, not in a registry.
        registry = None if self.multiprocess else CollectorRegistry()
        self._registry = registry
        # Its _count is the number of exchanges: no separate counter, which would cost
        # another write per exchange for the same figure.
        self.exchange_seconds = Histogram(
            "lgsp_exchange_duration_seconds",
            "Exchanges through /r1 and their time from request received to answer ready, "
            "by service, client and outcome.",
            ["service", "client", "outcome"],
            buckets=EXCHANGE_BUCKETS,
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            "lgsp_upstream_duration_seconds",
            "Time the upstream took to answer (all attempts), by upstream and status class.",
            ["upstream", "status"],
            buckets=EXCHANGE_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "lgsp_rate_limit_rejections",
            "Exchanges refused by a rate limit or a quota, by limit scope and kind.",
            ["scope", "kind"],
            registry=registry,
        )
        self.audit_failures = Counter(
            "lgsp_audit_write_failures",
            "Audit events that could not be made durable.",
            registry=registry,
        )

        def instance_gauge(name: str, doc: str, *labels: str) -> Gauge:
            # One worker's value, labelled with its instance: summed over live processes
            # ("livesum"), which leaves each instance's own value.
            return Gauge(
                name, doc, [*labels, "instance"], registry=registry, multiprocess_mode="livesum"
            )

        self.spool_records = instance_gauge(
            "lgsp_audit_spool_records",
            "Audit events in this instance's spool, not yet taken by the broker.",
        )
        self.spool_bytes = instance_gauge(
            "lgsp_audit_spool_bytes", "Bytes in this instance's audit spool."
        )
        self.witness_behind = instance_gauge(
            "lgsp_audit_witness_behind_leaves",
            "Leaves of this instance's log that a witness has not cosigned yet (alarm > 0).",
            "witness",
        )
        self.spool_disk_full = instance_gauge(
            "lgsp_audit_spool_disk_full",
            "1 while this instance's audit spool finds its disk full (events not durable).",
        )
        self.spool_disk_free = instance_gauge(
            "lgsp_audit_spool_disk_free_bytes", "Free bytes on the disk of this instance's spool."
        )
        self.breaker_state = instance_gauge(
            "lgsp_upstream_circuit_state",
            "Circuit breaker per upstream in this instance: 0 closed, 1 half-open, 2 open.",
            "upstream",
        )
        self.upstream_in_flight = instance_gauge(
            "lgsp_upstream_in_flight",
            "Requests to each upstream in flight in this instance.",
            "upstream",
        )
        # A counter (summed over workers), fed from the upstream client's own tally.
        self.upstream_retries = Counter(
            "lgsp_upstream_retries",
            "Upstream attempts that were retries.",
            ["upstream"],
            registry=registry,
        )
        self._retries_seen: dict[str, int] = {}
        self._process = _ProcessMetrics(registry, self.multiprocess)
        self.config_version = instance_gauge(
            "lgsp_config_version",
            "The configuration version this instance serves (bumped by every admin change, "
            "credentials too; not the policy version of lgsp policy history).",
        )
        self._exchange_tallies: dict[_ExchangeKey, _Tally] = {}
        self._upstream_tallies: dict[tuple[str, int], _Tally] = {}

    def exchange(
        self, service: ServiceKey | None, client: str | None, outcome: str, seconds: float
    ) -> None:
        key = (service, client, outcome)
        tally = self._exchange_tallies.get(key)
        if tally is None:
            labels = ("/".join(service) if service else UNKNOWN, client or UNKNOWN, outcome)
            tally = _Tally(self.exchange_seconds.labels(*labels))
            self._exchange_tallies[key] = tally
        tally.observe(seconds)

    def upstream(self, upstream: str, status: int, seconds: float) -> None:
        key = (upstream, status // 100)
        tally = self._upstream_tallies.get(key)
        if tally is None:
            tally = _Tally(self.upstream_seconds.labels(upstream, f"{status // 100}xx"))
            self._upstream_tallies[key] = tally
        tally.observe(seconds)

    def flush(self) -> None:
        """Hand what was counted since the last flush to prometheus_client."""
        for tally in self._exchange_tallies.values():
            tally.flush()
        for tally in self._upstream_tallies.values():
            tally.flush()

    def retries(self, totals: dict[str, int]) -> None:
        """Count the retries made since the last call, from the client's running totals."""
        for upstream, total in totals.items():
            new = total - self._retries_seen.get(upstream, 0)
            if new > 0:
                self.upstream_retries.labels(upstream).inc(new)
            self._retries_seen[upstream] = total

    def process(self) -> None:
        """This process's CPU, memory, file descriptors (the standard process_* series)."""
        self._process.refresh(self.instance)

    def rate_limit_rejection(self, scope: str, kind: str) -> None:
        self.rate_limited.labels(scope, kind).inc()

    def render(self) -> bytes:
        self.flush()
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        assert self._registry is not None
        return generate_latest(self._registry)


class _ProcessMetrics:
    """prometheus_client's process collector, per worker. In one process it is registered
    as it is; with several workers, whose values prometheus_client cannot merge, each
    worker copies what the collector reads of it into series labelled with its instance."""

    def __init__(self, registry: CollectorRegistry | None, multiprocess_mode: bool) -> None:
        self._reader: ProcessCollector | None = None
        self._gauges: dict[str, Gauge] = {}
        self._cpu: Counter | None = None
        self._cpu_seen = 0.0
        if not multiprocess_mode:
            ProcessCollector(registry=registry)
            return
        self._reader = ProcessCollector(registry=None)
        for name, doc in _PROCESS_GAUGES.items():
            self._gauges[name] = Gauge(
                name, doc, ["instance"], registry=registry, multiprocess_mode="livesum"
            )
        self._cpu = Counter(
            "process_cpu_seconds", "Total user and system CPU time spent in seconds.",
            ["instance"], registry=registry,
        )  # fmt: skip

    def refresh(self, instance: str) -> None:
        if self._reader is None or self._cpu is None:
            return
        for family in self._reader.collect():
            for sample in family.samples:
                if sample.name == "process_cpu_seconds_total":
                    new = sample.value - self._cpu_seen
                    if new > 0:
                        self._cpu.labels(instance).inc(new)
                        self._cpu_seen = sample.value
                elif sample.name in self._gauges:
                    self._gauges[sample.name].labels(instance).set(sample.value)


_PROCESS_GAUGES = {
    "process_resident_memory_bytes": "Resident memory size in bytes.",
    "process_virtual_memory_bytes": "Virtual memory size in bytes.",
    "process_open_fds": "Number of open file descriptors.",
    "process_max_fds": "Maximum number of open file descriptors.",
    "process_start_time_seconds": "Start time of the process since unix epoch in seconds.",
}


class _Tally:
    """Observations of one histogram child since the last flush."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        # prometheus_client's own bucket bounds (with +Inf last) and per-bucket values.
        self.bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # The first bucket whose bound is >= seconds, as Histogram.observe picks it.
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def flush(self) -> None:
        if not any(self.counts):
            return
        buckets = self.child._buckets
        for i, n in enumerate(self.counts):
            if n:
                buckets[i].inc(n)
                self.counts[i] = 0
        self.child._sum.inc(self.total)
        self.total = 0.0


def worker_exited(pid: int, directory: Path) -> None:
    """Drop a dead worker's live gauges (its counters stay summed in)."""
    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
