"""Prometheus metrics of one server. Labels are bounded enums (reason, code, kind): never
room or participant ids, whose cardinality a client controls."""
from __future__ import annotations

from prometheus_client import (PROCESS_COLLECTOR, CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector)

# Media-time delay from a speaker's detected speech onset to the switch: what a viewer
# feels. Turn changes should land in the 0.2-0.8 s buckets.
SWITCH_DELAY_BUCKETS_S = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25,
                          1.5, 2.0, 3.0, 5.0, 10.0)
# Wall time from receiving a request to sending its decisions: the service's own cost.
# Fine steps from 1 to 30 ms, where the targets lie (p99 <= 2 ms for a small
# deployment, <= 10 ms for a 2000-room batch) and a 20 ms tick's budget ends, so that a
# quantile read from them (benchmarks/loadgen.py, histogram_quantile) is within ~1 ms;
# a superset of the earlier buckets, so queries on those keep working.
PROCESSING_BUCKETS_S = (5e-5, 1e-4, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1.25e-3, 1.5e-3, 1.75e-3,
                        2e-3, 2.5e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3, 9e-3, 1e-2,
                        1.2e-2, 1.4e-2, 1.6e-2, 1.8e-2, 2e-2, 2.5e-2, 3e-2, 4e-2, 5e-2,
                        0.1, 0.25, 1.0)


SWITCH_REASONS = ("FIRST_SPEAKER", "DOMINANT_SPEAKER", "VIDEO_ON", "VIDEO_OFF", "LEFT", "PINNED",
                  "UNPINNED")
ERROR_CODES = ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "UNAUTHENTICATED",
               "NOT_FOUND", "OUT_OF_RANGE", "UNAVAILABLE", "INTERNAL")
REDIS_OPS = ("publish", "restore", "watch")
LIMITS = ("max_ticks_per_batch", "max_entries_per_batch", "max_events_per_tick", "max_rooms",
          "max_rooms_per_tenant", "max_participants_per_room", "max_participants",
          "max_participants_per_tenant")
"""The configured limits a tick or batch can be refused by (ServiceConfig field names)."""


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if registry is None and PROCESS_COLLECTOR is not None:
            # process_* (CPU, RSS, start time): what restart and saturation alerts read
            ProcessCollector(registry=r)
        self.switch_delay = Histogram(
            "speakerswitch_switch_delay_seconds",
            "Media time from the new speaker's detected speech onset to the switch decision",
            buckets=SWITCH_DELAY_BUCKETS_S, registry=r)
        self.processing_latency = Histogram(
            "speakerswitch_processing_latency_seconds",
            "Wall time from receipt of a request to emission of its decisions",
            buckets=PROCESSING_BUCKETS_S, registry=r)
        self.frames = Counter("speakerswitch_frames", "Participant audio frames processed",
                              ["kind"], registry=r)
        self.ticks = Counter("speakerswitch_ticks", "Room ticks processed", registry=r)
        self.batches = Counter("speakerswitch_batches", "Stream requests processed", registry=r)
        self.limit_rejections = Counter(
            "speakerswitch_limit_rejections",
            "Ticks and calls refused by a configured limit, by the limit's name",
            ["limit"], registry=r)
        self.drains = Counter(
            "speakerswitch_drains",
            "Group commits: the stream requests waiting at once, stepped together "
            "(batches / drains = how many streams share a step)", registry=r)
        self.switches = Counter("speakerswitch_switches", "Main video feed switches",
                                ["reason"], registry=r)
        self.errors = Counter("speakerswitch_errors", "Rejected ticks and failed calls",
                              ["code"], registry=r)
        self.rooms = Gauge("speakerswitch_rooms", "Rooms in memory", registry=r)
        self.participants = Gauge("speakerswitch_participants", "Participants in memory",
                                  registry=r)
        self.streams = Gauge("speakerswitch_streams", "Open media-server streams", registry=r)
        self.watchers = Gauge("speakerswitch_watchers", "Open Watch subscriptions", registry=r)
        self.rooms_restored = Counter(
            "speakerswitch_rooms_restored",
            "Rooms taken over from Redis state (another replica served them before)",
            registry=r)
        self.redis_errors = Counter("speakerswitch_redis_errors", "Failed Redis operations",
                                    ["op"], registry=r)
        # every label value exists from the start, at 0, so rate() and alerts see a series
        # before the first event of its kind
        for kind in ("level", "pcm"):
            self.frames.labels(kind)
        for reason in SWITCH_REASONS:
            self.switches.labels(reason)
        for code in ERROR_CODES:
            self.errors.labels(code)
        for op in REDIS_OPS:
            self.redis_errors.labels(op)
        for limit in LIMITS:
            self.limit_rejections.labels(limit)
