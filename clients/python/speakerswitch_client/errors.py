"""What the client raises: a gRPC status it cannot recover from by reconnecting."""
from __future__ import annotations

import grpc

RETRYABLE = frozenset({
    grpc.StatusCode.UNAVAILABLE,         # server down, restarting, draining; network
    grpc.StatusCode.INTERNAL,            # the stream broke mid-message
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,           # the server ended the call while stopping
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # a stream or watcher limit: free again later
})
"""Reconnecting (with backoff) may help; any other status is the caller's to fix."""


class SpeakerSwitchError(Exception):
    """A call failed with a status that reconnecting would not change."""

    def __init__(self, code: grpc.StatusCode, details: str, hint: str = "",
                 rpc_error: grpc.RpcError | None = None) -> None:
        self.code, self.details = code, details
        self.rpc_error = rpc_error
        """The gRPC error itself (what the blocking client raises, as grpc does)."""
        super().__init__(f"{code.name}: {details}" + (f" ({hint})" if hint else ""))


class AuthenticationError(SpeakerSwitchError):
    """UNAUTHENTICATED: no token, a bad or an expired one."""


class PermissionDeniedError(SpeakerSwitchError):
    """PERMISSION_DENIED: the token lacks the grant or the room is outside its pattern."""


def from_rpc(e: grpc.RpcError) -> SpeakerSwitchError:
    code, details = e.code(), e.details() or ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AuthenticationError(code, details, "check the client's token", e)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDeniedError(code, details, "check the token's grants and rooms", e)
    return SpeakerSwitchError(code, details, rpc_error=e)
