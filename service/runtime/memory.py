"""How many participants this process may hold: the memory it may use, cgroup-aware.

A participant costs about 1.4 KB in the registry and engine (benchmarks/bench_service.py,
``test_memory_per_participant``); rooms, responses, watcher queues and the interpreter come
on top. The server-wide participant cap is derived from the memory limit so that a full
server stays inside its container instead of being OOM-killed with every room on it.
"""
from __future__ import annotations

import pathlib

BYTES_PER_PARTICIPANT_BUDGET = 8 * 1024
"""Memory set aside per participant: 1.4 KB measured, times about 6 for rooms, ids,
responses and watcher queues under load, so the cap is reached before the limit is."""
MEMORY_SHARE_FOR_PARTICIPANTS = 0.5
"""The other half is for the interpreter, gRPC buffers and bursts."""
FALLBACK_MEMORY_BYTES = 1 << 30
"""When no limit can be read (not Linux): plan for 1 GiB."""

_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max",                     # cgroup v2
                  "/sys/fs/cgroup/memory/memory.limit_in_bytes")   # cgroup v1
_UNLIMITED_BYTES = 1 << 60
"""cgroup v1 says "no limit" with a number near 2^63."""


def memory_limit_bytes(root: str = "/") -> int:
    """The smaller of the container's memory limit and the machine's memory."""
    base = pathlib.Path(root)
    limits = []
    for path in _CGROUP_LIMITS:
        try:
            text = (base / path.lstrip("/")).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _UNLIMITED_BYTES:
            limits.append(int(text))
    try:
        for line in (base / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                limits.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    return min(limits) if limits else FALLBACK_MEMORY_BYTES


def default_max_participants(root: str = "/") -> int:
    return max(1000, int(memory_limit_bytes(root) * MEMORY_SHARE_FOR_PARTICIPANTS
                         // BYTES_PER_PARTICIPANT_BUDGET))
