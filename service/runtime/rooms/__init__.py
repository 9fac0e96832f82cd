"""The room registry (registry.py): protobuf batches in, engine calls, protobuf decisions out."""
from .registry import (MAX_ID_BYTES, MAX_TIMESTAMP_MS, _OVERRIDE_RANGES, Batch, Room, RoomKey,
                       RoomRegistry, TickError, Watcher, check_id, tuning_for)

__all__ = ["MAX_ID_BYTES", "MAX_TIMESTAMP_MS", "_OVERRIDE_RANGES", "Batch", "Room", "RoomKey",
           "RoomRegistry", "TickError", "Watcher", "check_id", "tuning_for"]
