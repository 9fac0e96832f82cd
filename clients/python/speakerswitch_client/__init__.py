"""speakerswitch-client: the asyncio client of the speakerswitch active-speaker service.

A media server pushes levels (or PCM) and participant events per packet, for any number of
rooms; the client sends them as one message per tick and hands decisions back as callbacks
(``on_switch``, ``on_active_speakers``, ``on_speaking``, ``on_forwarding``...) or as an
async iterator (``decisions()``), with each room's view (``room(id).participants``).
"""
from .api import speakerswitch_pb2 as pb
from .client import SHARD_HEADER, SpeakerSwitchClient, shard_of, tls_credentials
from .errors import AuthenticationError, PermissionDeniedError, SpeakerSwitchError
from .state import Participant, RoomView
from .stream import Backoff

__all__ = ["AuthenticationError", "Backoff", "Participant", "PermissionDeniedError",
           "RoomView", "SHARD_HEADER", "SpeakerSwitchClient", "SpeakerSwitchError", "pb",
           "shard_of", "tls_credentials"]
__version__ = "0.1.0"
