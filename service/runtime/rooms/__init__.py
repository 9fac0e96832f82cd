"""The room registry: protobuf batches in, engine calls, protobuf decisions out.
``RoomRegistry.process`` (registry.py) is the one path from a ``StreamRequest`` to its
``StreamResponse``; beside it, each part can be read and tested alone:

- model.py: what a room and a batch are, ``TickError``, the bounds of ids and media time
- validation.py: whether a tick may be applied, decided before anything changes, and the
  limits on rooms and participants (``Capacity``)
- batches.py: a request as a whole: its budget, the waves its ticks are stepped in, its
  response's size
- events.py: engine events as messages, numbered per room, handed to the response, the
  history and the watchers
- watchers.py: subscribing, resuming after a sequence, the end of a room's watchers
- snapshots.py: a room's state (GetRoom, Watch's snapshot, failover) and summary
"""
from .model import MAX_ID_BYTES, MAX_TIMESTAMP_MS, Batch, Room, RoomKey, TickError, Watcher
from .registry import RoomRegistry
from .validation import OVERRIDE_RANGES, check_id, tuning_for

__all__ = ["MAX_ID_BYTES", "MAX_TIMESTAMP_MS", "OVERRIDE_RANGES", "Batch", "Room", "RoomKey",
           "RoomRegistry", "TickError", "Watcher", "check_id", "tuning_for"]
