"""Service configuration: embedded defaults < TOML file < SPEAKERSWITCH_* env < flags."""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dsp.tuning import PROFILES

ENV_PREFIX = "SPEAKERSWITCH_"
CLIENT_ENV = frozenset({"SPEAKERSWITCH_TOKEN", "SPEAKERSWITCH_CONFIG"})
"""SPEAKERSWITCH_* variables that are not server settings: the clients' default token (a
shell may export it beside a server), the config file's path."""
MAX_RTP_JITTER_MS = 1000.0
"""``rtp_jitter_ms`` at most: a wait of a second already shows every switch a second late."""
_SERVICE_LINK_NAME = re.compile(
    r"(?:.+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_.+)?|PORT_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)")
_SERVICE_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://", re.IGNORECASE)
"""Kubernetes gives every pod, for each Service X in its namespace, X_SERVICE_HOST,
X_SERVICE_PORT[_NAME], X_PORT=tcp://ip:port and X_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR].
A Service named speakerswitch (or speakerswitch-proxy, -metrics ...) therefore sets
SPEAKERSWITCH_* variables that are not settings; SPEAKERSWITCH_PORT=tcp://10.96.0.10:50051
even collides with the port setting. These shapes are ignored, never parsed."""


def is_service_link(name: str, value: str) -> bool:
    """A Kubernetes service-link variable (by its name's shape, or a tcp:// value)."""
    return bool(_SERVICE_LINK_NAME.fullmatch(name) or _SERVICE_LINK_VALUE.match(value))


@dataclass(frozen=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    """Interface the gRPC server binds; 0.0.0.0 to serve other machines."""
    port: int = 50051
    """gRPC port (0: pick a free one)."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9100
    """Prometheus /metrics port (0: pick a free one, -1: disabled)."""
    http_host: str = "127.0.0.1"
    http_port: int = -1
    """Web viewer and its HTTP API (0: pick a free one, -1: off, the default: the viewer
    is for development and operators, not something every deployment exposes)."""
    rtp_host: str = "127.0.0.1"
    rtp_port: int = -1
    """UDP port of the RTP ingest (docs/rtp.md): a media server forwards each participant's
    audio here (0: pick a free one, -1: off). RTP carries no credentials: whoever can reach
    this port can speak for a mapped SSRC, so bind it where only the media servers reach."""
    rtp_map: str = ""
    """JSON file mapping SSRCs to tenant, room and participant (docs/rtp.md)."""
    rtp_jitter_ms: float = 60.0
    """How long after a 20 ms tick's end (wall clock) the RTP ingest still takes its late
    packets. Longer keeps packets that a stalled host (a starved CPU) read late, for that
    much more delay before each tick is decided; the packet counter's ``late`` outcome
    says when it is too short."""
    profile: str = "meeting"
    """Tuning profile of rooms that do not choose one."""
    idle_timeout_s: float = 300.0
    """A room with no tick for this long (wall time) is dropped with its state."""
    gc_interval_s: float = 5.0
    """How often idle rooms are looked for."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest request message accepted by gRPC."""
    max_ticks_per_batch: int = 20000
    max_entries_per_batch: int = 200000
    """Audio frames, RFC 6464 level bytes, roster names and events of all ticks of one
    request together; a batch over it is refused whole (INVALID_ARGUMENT) before any of it
    is applied. Bounds one request's work (which a drain slices, so it never holds other
    calls) and memory; 2,000 rooms of 10 in one tick are 20,000 entries. A request smaller
    in bytes than this cannot be over it, so a media server's batches are never counted."""
    max_events_per_tick: int = 4096
    """Participant events (join, leave, video, pin ...) in one tick; a tick over it is
    refused (INVALID_ARGUMENT), the rest of its batch goes on. A full room joining at once
    with its cameras and mutes stated fits."""
    max_rooms: int = 100000
    max_rooms_per_tenant: int = 20000
    max_participants_per_room: int = 1000
    max_participants: int = 0
    """Participants in all rooms of this server together; a join over it is refused
    (RESOURCE_EXHAUSTED) for its tick while the rooms already here go on. 0: derived from
    the memory the process may use (the container's cgroup limit or the machine's memory;
    service/runtime/memory.py): a 2 GiB pod holds 131,072."""
    max_participants_per_tenant: int = 0
    """The same, per tenant, so that one tenant cannot take the others' share (0: as
    max_participants; set it lower when several tenants share a server)."""
    watch_queue_events: int = 4096
    """Events buffered per Watch subscriber; one that falls further behind is dropped
    (RESOURCE_EXHAUSTED) rather than growing memory or slowing the room."""
    watch_history_events: int = 1024
    """Events kept per watched room so that a Watch resuming with ``after_sequence`` gets
    what it missed (about a minute of a busy room's events)."""
    grace_s: float = 5.0
    """On SIGTERM/SIGINT: time given to in-flight calls before the server stops."""
    log_level: str = "INFO"
    workers: int = 1
    """Server processes sharing the gRPC port (SO_REUSEPORT); each owns the streams it
    accepts and their rooms, and serves metrics on metrics_port + its index."""
    reuse_port: bool = False
    """Bind the gRPC port with SO_REUSEPORT (set for each worker when workers > 1)."""
    # --- scale-out (docs/scaling-out.md) -------------------------------------------------
    redis_url: str = ""
    """Redis for several replicas behind a room-affine proxy (e.g. redis://127.0.0.1:6379/0):
    decisions fan out through it to a Watch on any replica, and a replica that takes over a
    room restores its decisions from it. Empty: one process, nothing shared."""
    redis_prefix: str = "speakerswitch"
    """Key prefix, so several deployments can share one Redis."""
    redis_stream_events: int = 1024
    """Events kept per room in its Redis stream (how far back a Watch can resume)."""
    redis_ttl_s: float = 86400.0
    """A room's stream and state expire this long after its last change."""
    # --- security ---------------------------------------------------------------------
    insecure_no_auth: bool = False
    """Accept every call without a token, as tenant "" with every grant. For local
    development only: the server says so loudly in its log."""
    jwt_secret_file: str = ""
    """File holding the HS256 secret that signs tokens."""
    jwt_public_key_file: str = ""
    """PEM public key verifying RS256/ES256 tokens (the issuer keeps the private key)."""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_leeway_s: float = 30.0
    """Clock skew tolerated between the token issuer and this server: a token is accepted
    until its exp plus this, and a call it opened (Stream, Watch, the viewer's event stream)
    ends then with UNAUTHENTICATED, whether or not messages flow."""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    """Serve gRPC over TLS with this certificate chain and key."""
    tls_client_ca_file: str = ""
    """With TLS: require client certificates signed by this CA (mutual TLS)."""
    insecure_http: bool = False
    """With TLS configured, the web viewer serves HTTPS with the same certificate (and
    client CA). Without TLS, this lets it serve plain HTTP on an address other than loopback
    (behind a proxy that terminates TLS); without it such a bind is refused when tokens are
    required, as they would cross the network in clear."""
    max_streams_per_tenant: int = 64
    max_batches_per_s: float = 1000.0
    """Per-stream rate limit (burst: one second's worth); a batch over it is refused
    (RESOURCE_EXHAUSTED) and the stream goes on."""
    max_watchers_per_tenant: int = 256
    """Watch calls and viewer event streams (SSE) one tenant may hold open at once, those
    waiting for their room included; one more is refused (RESOURCE_EXHAUSTED, HTTP 429)."""
    watch_bytes_per_tenant: int = 64 * 1024 * 1024
    """Bytes of events queued for one tenant's watchers together (an event counts once for
    each watcher it waits for, at its encoded size plus 64 bytes). When an event would take
    the tenant over it, the tenant's slowest watcher (the most bytes queued) is dropped
    with RESOURCE_EXHAUSTED, its queue freed; a watcher is also dropped when its own queue
    exceeds watch_queue_events."""

    def validate(self) -> "ServiceConfig":
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is not a TCP port")
        if not -1 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port: {self.metrics_port} is not a TCP port (or -1)")
        if not -1 <= self.http_port <= 65535:
            raise ValueError(f"http_port: {self.http_port} is not a TCP port (or -1)")
        if not -1 <= self.rtp_port <= 65535:
            raise ValueError(f"rtp_port: {self.rtp_port} is not a UDP port (or -1)")
        if not 0 < self.rtp_jitter_ms <= MAX_RTP_JITTER_MS:  # also refuses NaN
            raise ValueError(f"rtp_jitter_ms: {self.rtp_jitter_ms} is outside "
                             f"(0, {MAX_RTP_JITTER_MS:g}] ms")
        if self.rtp_map and self.rtp_port < 0:
            raise ValueError("rtp_map: set rtp_port too (the map is for the RTP ingest)")
        if self.workers < 1:
            raise ValueError(f"workers: must be >= 1, got {self.workers}")
        if self.workers > 1 and self.rtp_port >= 0:
            # workers share their ports by SO_REUSEPORT, which spreads datagrams and calls
            # by the sender's address, not by room: a room's RTP sources, its MapRtpSource
            # and its Watch would land in different processes, each with part of the room
            raise ValueError("rtp_port: the RTP ingest needs workers = 1 (several workers "
                             "would split a room's sources and calls between processes; "
                             "see docs/rtp.md)")
        if self.workers > 1 and self.port == 0:
            raise ValueError("workers: several workers need a fixed port (not 0) to share")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file/tls_key_file")
        for name in ("max_watchers_per_tenant", "watch_bytes_per_tenant"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        if not 0 <= self.jwt_leeway_s <= 3600:
            raise ValueError(f"jwt_leeway_s: must be 0..3600, got {self.jwt_leeway_s}")
        if (self.http_port >= 0 and not self.tls_cert_file and not self.insecure_http
                and not self.insecure_no_auth and not is_loopback(self.http_host)):
            raise ValueError(
                f"http_host: {self.http_host!r} is not a loopback address, and the web viewer "
                "would carry tokens over plain HTTP: set tls_cert_file/tls_key_file (it then "
                "serves HTTPS with them), or insecure_http behind a proxy that terminates TLS")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"redis_url: {redacted_url(self.redis_url)!r} is not a redis://, "
                             "rediss:// or unix:// URL")
        if self.profile not in PROFILES:
            raise ValueError(f"profile: unknown {self.profile!r} (known: {', '.join(PROFILES)})")
        for name in ("idle_timeout_s", "gc_interval_s", "max_message_bytes",
                     "max_ticks_per_batch", "max_entries_per_batch", "max_events_per_tick",
                     "max_rooms", "max_rooms_per_tenant",
                     "max_participants_per_room", "watch_queue_events", "watch_history_events",
                     "max_streams_per_tenant", "max_batches_per_s", "redis_stream_events",
                     "redis_ttl_s"):
            if not getattr(self, name) > 0:  # NaN is not > 0 either
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("max_participants", "max_participants_per_tenant"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0 (0: derived from memory), got "
                                 f"{getattr(self, name)}")
        if not self.insecure_no_auth and not (self.jwt_secret_file or self.jwt_public_key_file):
            raise ValueError("authentication needs jwt_secret_file or jwt_public_key_file "
                             "(or --insecure-no-auth for local development)")
        return self


def redacted_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and errors: a Redis URL carries
    the password its server requires (redis://:PASSWORD@redis:6379/0, from a Secret)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        user = user.split(":", 1)[0] + ":***"
    q = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", tail)
    return f"{scheme}://{user}{at}{host}{slash}{q}"


def is_loopback(host: str) -> bool:
    """``host`` only reaches this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


FIELDS = {f.name: f for f in dataclasses.fields(ServiceConfig)}


def _coerce(name: str, value: Any) -> Any:
    kind = type(getattr(ServiceConfig, name))
    if isinstance(value, kind):
        return value
    if kind is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: expected true/false, got {value!r}")
    try:
        if kind is int and isinstance(value, str):
            return int(value, 0)
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {kind.__name__}, got {value!r}") from None


def load(overrides: Mapping[str, Any] | None = None, config_file: str | None = None,
         env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Merge the sources, later ones winning; unknown keys are errors, not typos ignored."""
    values: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise OSError(e.errno, f"{config_file}: {e.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{config_file}: not valid TOML ({e})") from None
        data = data.get("server", data)
        if not isinstance(data, dict):
            raise ValueError(f"{config_file}: [server] must be a table of settings")
        for k, v in data.items():
            if k not in FIELDS:
                raise ValueError(f"{config_file}: unknown setting {k!r}")
            try:
                values[k] = _coerce(k, v)
            except ValueError as e:
                raise ValueError(f"{config_file}: {e}") from None
    env = os.environ if env is None else env
    for k, v in env.items():
        if not k.startswith(ENV_PREFIX) or k in CLIENT_ENV:
            continue
        if is_service_link(k, v):
            logging.getLogger("speakerswitch.config").info(
                "ignoring %s: a Kubernetes service link, not a setting", k)
            continue
        name = k[len(ENV_PREFIX):].lower()
        if name not in FIELDS:
            raise ValueError(f"environment: unknown setting {k} (settings: "
                             f"{ENV_PREFIX}<KEY> for the keys of docs/configuration.md)")
        values[name] = _coerce(name, v)
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = _coerce(k, v)
    return ServiceConfig(**values).validate()
