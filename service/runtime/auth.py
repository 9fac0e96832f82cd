"""Bearer-token authentication and tenancy.

Every call but health checking and reflection carries ``authorization: Bearer <JWT>``.
The token is signed with HS256 (a shared secret) or RS256/ES256 (the server holds only the
public key) and says who the caller is and what it may do:

  tenant   the namespace of its rooms (required): tenant A can never reach tenant B's rooms
  grants   ["publish"] to stream audio and state, ["watch"] to follow rooms (required)
  rooms    an optional fnmatch pattern the room ids must match ("studio-*")
  exp      expiry, seconds since the epoch (required)

No token or a bad one is UNAUTHENTICATED; a valid token without the grant or the room is
PERMISSION_DENIED. Tokens are never logged.
"""
from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
import jwt

log = logging.getLogger("speakerswitch.auth")

GRANTS = ("publish", "watch")
SYMMETRIC = ("HS256",)
ASYMMETRIC = ("RS256", "ES256")
LEEWAY_S = 30
"""Clock skew tolerated on exp/nbf between the token issuer and us (jwt_leeway_s)."""
CLIP_BYTES = 64
"""Client input quoted in a status message or a log line is cut to this many bytes."""


def clip(text: str, limit: int = CLIP_BYTES) -> str:
    """``text`` (client input) quoted for a status message or a log line: its repr, cut to
    ``limit`` bytes of it, with its full length when it was cut."""
    if len(text) <= limit // 4 or len(text.encode()) <= limit:
        return repr(text)
    head = text.encode()[:limit].decode(errors="ignore")
    return f"{head!r}... ({len(text.encode())} bytes)"


class AuthError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Principal:
    tenant: str
    grants: frozenset[str]
    rooms: str | None = None
    expires_s: float | None = None
    leeway_s: float = LEEWAY_S
    """Clock skew tolerated past ``expires_s``: the token is good until ``ends_s``."""

    def require(self, grant: str) -> None:
        if grant not in self.grants:
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                            f"token of tenant {self.tenant!r} lacks the {grant!r} grant")

    def room_allowed(self, room_id: str) -> bool:
        return self.rooms is None or fnmatch.fnmatchcase(room_id, self.rooms)

    def check_room(self, room_id: str) -> None:
        if not self.room_allowed(room_id):
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                            f"room_id: {clip(room_id)} is outside the token's rooms")

    @property
    def ends_s(self) -> float | None:
        """When the token stops being good (wall clock, seconds since the epoch): a call it
        opened ends then."""
        return None if self.expires_s is None else self.expires_s + self.leeway_s

    def expired(self, now_s: float | None = None) -> bool:
        ends = self.ends_s
        return ends is not None and (time.time() if now_s is None else now_s) > ends


INSECURE = Principal("", frozenset(GRANTS))
"""What every caller is with --insecure-no-auth: the default tenant, every grant."""


class Authenticator:
    """Verifies tokens with an HS256 secret and/or a public key (RS256/ES256)."""

    def __init__(self, hs256_secret: bytes | None = None, public_key: bytes | None = None,
                 audience: str | None = None, issuer: str | None = None,
                 leeway_s: float = LEEWAY_S) -> None:
        if not hs256_secret and not public_key:
            raise ValueError("authentication needs a JWT secret or public key "
                             "(or --insecure-no-auth for local development)")
        self.keys: list[tuple[bytes, Sequence[str]]] = []
        if hs256_secret:
            self.keys.append((hs256_secret, SYMMETRIC))
        if public_key:
            self.keys.append((public_key, ASYMMETRIC))
        self.audience, self.issuer = audience, issuer
        self.leeway_s = leeway_s

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        token = bearer_token(metadata)
        claims = None
        error = "no key verifies it"
        header_alg = _header_alg(token)
        for key, algorithms in self.keys:
            if header_alg not in algorithms:
                continue
            try:
                claims = jwt.decode(token, key, algorithms=list(algorithms),
                                    audience=self.audience, issuer=self.issuer,
                                    leeway=self.leeway_s,
                                    options={"require": ["exp", "tenant", "grants"]})
                break
            except jwt.ExpiredSignatureError:
                raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "token expired") from None
            except jwt.PyJWTError as e:
                error = type(e).__name__
        if claims is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, f"invalid token ({error})")
        return principal_from_claims(claims, self.leeway_s)


def _header_alg(token: str) -> str:
    try:
        return str(jwt.get_unverified_header(token).get("alg", ""))
    except jwt.PyJWTError:
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "malformed token") from None


def principal_from_claims(claims: dict, leeway_s: float = LEEWAY_S) -> Principal:
    tenant, grants, rooms = claims.get("tenant"), claims.get("grants"), claims.get("rooms")
    if not isinstance(tenant, str) or not tenant or len(tenant.encode()) > 128:
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "token claim 'tenant' must be 1..128 bytes")
    if not isinstance(grants, list) or not all(g in GRANTS for g in grants):
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                        f"token claim 'grants' must be a list of {', '.join(GRANTS)}")
    if rooms is not None and not isinstance(rooms, str):
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "token claim 'rooms' must be a string")
    return Principal(tenant, frozenset(grants), rooms, float(claims["exp"]), leeway_s)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            value = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                                "authorization metadata must be 'Bearer <token>'")
            return token.strip()
    raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "missing authorization metadata "
                    "('Bearer <token>')")


def key_algorithm(key: bytes) -> tuple[str, str]:
    """The algorithm a token signed with ``key`` uses, and what the key is: an RSA private
    key PEM signs RS256, an EC P-256 one ES256, anything that is not PEM is an HS256
    secret. A PEM that cannot sign (a public key, a certificate, another curve, a
    passphrase) is a ValueError saying what it is."""
    if b"-----BEGIN" not in key:
        return "HS256", "a shared secret (not PEM)"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if b"PUBLIC KEY-----" in key or b"CERTIFICATE-----" in key:
        raise ValueError("a public key or certificate: tokens are signed with the private key "
                         "(the server verifies them with the public one)")
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        raise ValueError("an encrypted private key: give it without a passphrase") from None
    except ValueError as e:
        raise ValueError(f"PEM, but not a private key that can be read ({e})") from None
    if isinstance(private, rsa.RSAPrivateKey):
        return "RS256", f"an RSA private key ({private.key_size} bits)"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if private.curve.name != "secp256r1":
            raise ValueError(f"an EC private key on {private.curve.name}: ES256 needs P-256 "
                             "(secp256r1)")
        return "ES256", "an EC P-256 private key"
    raise ValueError(f"a {type(private).__name__.lstrip('_')}: RS256 needs an RSA private "
                     "key, ES256 an EC P-256 one")


def create_token(key: bytes, tenant: str, grants: Sequence[str], ttl_s: float,
                 rooms: str | None = None, algorithm: str = "HS256",
                 now_s: float | None = None, audience: str | None = None,
                 issuer: str | None = None) -> str:
    """A signed token (``key``: the HS256 secret, or the RS256/ES256 private key PEM)."""
    bad = [g for g in grants if g not in GRANTS]
    if bad or not grants:
        raise ValueError(f"grants must be among {', '.join(GRANTS)}, got {list(grants)}")
    now = time.time() if now_s is None else now_s
    claims: dict = {"tenant": tenant, "grants": list(grants), "iat": int(now),
                    "exp": int(now + ttl_s)}
    if rooms:
        claims["rooms"] = rooms
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, key, algorithm=algorithm)


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '7d' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 15m, 1h, 7d)") from None
