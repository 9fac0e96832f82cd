"""The blocking client of the speakerswitch gRPC API (used by the CLI and the tests): the
client package's ``speakerswitch_client.sync``, a thin layer on its asyncio client
(clients/python; ``make install`` installs it into the venv beside the service)."""
from __future__ import annotations

try:
    from speakerswitch_client.sync import (DEFAULT_SHARDS, SHARD_HEADER, Client,
                                           ShardedSession, StreamSession, shard_of)
except ImportError as e:  # pragma: no cover - an install without the client package
    raise ImportError(f"service.client is the client package's blocking layer ({e}): "
                      "pip install ./clients/python (make install does)") from e

__all__ = ["Client", "DEFAULT_SHARDS", "SHARD_HEADER", "ShardedSession", "StreamSession",
           "shard_of"]
