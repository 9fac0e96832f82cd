"""The blocking client of the speakerswitch gRPC API (used by the CLI and the tests): the
client package's ``speakerswitch_client.sync``, a thin layer on its asyncio client.

Its sources (clients/python/speakerswitch_client) ship inside this wheel as
``service._client`` (setup.py maps them), so every install of the service has them: the
separate ``speakerswitch-client`` wheel is for media servers that want only the client,
and installing it beside the service changes nothing here."""
from __future__ import annotations

from ._client.sync import (DEFAULT_SHARDS, SHARD_HEADER, Client, ShardedSession,
                           StreamSession, shard_of)

__all__ = ["Client", "DEFAULT_SHARDS", "SHARD_HEADER", "ShardedSession", "StreamSession",
           "shard_of"]
