"""Authentication, tenancy, TLS and limits against a real server on loopback."""
from __future__ import annotations

import datetime
import ipaddress
import logging
import time

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import speakerswitch_pb2 as pb
from service.runtime.auth import create_token
from service.cli import main
from service.client import Client

from conftest import ServerThread, script_levels, switches, test_config

SECRET = b"test-secret-that-is-long-enough-for-hs256"
ABC = ["a", "b", "c"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    (d / "secret").write_bytes(SECRET + b"\n")
    private = ec.generate_private_key(ec.SECP256R1())
    (d / "ec.pem").write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (d / "ec.pub").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return d


@pytest.fixture(scope="module")
def secure_server(keys):
    cfg = test_config(insecure_no_auth=False, jwt_secret_file=str(keys / "secret"),
                      jwt_public_key_file=str(keys / "ec.pub"), max_streams_per_tenant=2)
    with ServerThread(cfg) as s:
        yield s


def token(tenant="acme", grants=("publish", "watch"), ttl=600, rooms=None, key=SECRET,
          algorithm="HS256"):
    return create_token(key, tenant, list(grants), ttl, rooms, algorithm)


def publish(client, room, segments=(("a", 0, 1500), ("b", 2000, 3500)), ms=3500):
    return [r for r in client.stream(
        [pb.StreamRequest(batch_id=1, ticks=script_levels(room, list(segments), ABC, ms))])]


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_calls_without_a_valid_token_are_unauthenticated(secure_server):
    target = secure_server.target
    cases = {
        "no token": None,
        "bad signature": token(key=b"another-secret-another-secret-xxxxx"),
        "expired": token(ttl=-120),
        "garbage": "not.a.jwt",
        "no tenant": jwt.encode({"grants": ["publish"], "exp": int(time.time()) + 60}, SECRET),
    }
    for name, tok in cases.items():
        with Client(target, token=tok) as c:
            for call in (lambda: publish(c, "r"), lambda: c.get_room("r"),
                         lambda: next(c.watch("r"))):
                code, details = code_of(call)
                assert code == grpc.StatusCode.UNAUTHENTICATED, (name, details)
    with Client(target, token=token(ttl=-120)) as c:
        assert "expired" in code_of(lambda: c.get_room("r"))[1]


def test_missing_grants_are_permission_denied(secure_server):
    with Client(secure_server.target, token=token(grants=("watch",))) as c:
        code, details = code_of(lambda: publish(c, "r"))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "publish" in details
    with Client(secure_server.target, token=token(grants=("publish",))) as c:
        code, details = code_of(lambda: c.get_room("r"))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "watch" in details


def test_tenants_never_see_each_others_rooms(secure_server):
    a = Client(secure_server.target, token=token("tenant-a"))
    b = Client(secure_server.target, token=token("tenant-b"))
    with a, b:
        out_a = publish(a, "shared-name")
        assert code_of(lambda: b.get_room("shared-name"))[0] == grpc.StatusCode.NOT_FOUND
        assert code_of(lambda: next(b.watch("shared-name")))[0] == grpc.StatusCode.NOT_FOUND
        # b's room of the same name is another room: its own first speaker, own sequence
        out_b = publish(b, "shared-name", segments=(("c", 0, 2000),), ms=2000)
        assert [s for _, s in switches(e for r in out_b for e in r.events)] == ["c"]
        assert out_b[0].events[0].sequence == 1
        state_a = a.get_room("shared-name")
        assert state_a.speaker_id == "b" and state_a.sequence == len(out_a[0].events)
        assert b.get_room("shared-name").speaker_id == "c"


def test_room_patterns_limit_what_a_token_reaches(secure_server):
    with Client(secure_server.target, token=token("acme", rooms="studio-*")) as c:
        ticks = script_levels("studio-1", [("a", 0, 600)], ABC, 600)[:3]
        ticks.insert(1, script_levels("other", [("a", 0, 20)], ABC, 20)[0])
        resp = list(c.stream([pb.StreamRequest(batch_id=1, ticks=ticks)]))[0]
        assert [(r.code, r.field) for r in resp.rejections] == [
            (grpc.StatusCode.PERMISSION_DENIED.value[0], "ticks[1].room_id")]
        assert c.get_room("studio-1").timestamp_ms == 60
        assert code_of(lambda: c.get_room("other"))[0] == grpc.StatusCode.PERMISSION_DENIED


def test_es256_tokens_are_verified_with_the_public_key(secure_server, keys):
    tok = token("ec-tenant", key=(keys / "ec.pem").read_bytes(), algorithm="ES256")
    with Client(secure_server.target, token=tok) as c:
        publish(c, "r")
        assert c.get_room("r").speaker_id == "b"
    forged = token("ec-tenant", key=ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), algorithm="ES256")
    with Client(secure_server.target, token=forged) as c:
        assert code_of(lambda: c.get_room("r"))[0] == grpc.StatusCode.UNAUTHENTICATED


def test_denials_are_logged_without_the_token(secure_server, caplog):
    tok = token(key=b"another-secret-another-secret-xxxxx")
    with caplog.at_level(logging.WARNING, logger="speakerswitch"):
        with Client(secure_server.target, token=tok) as c:
            code_of(lambda: c.get_room("r"))
    assert "denied a call" in caplog.text and "UNAUTHENTICATED" in caplog.text
    assert tok not in caplog.text and tok.split(".")[2] not in caplog.text


def test_health_needs_no_token(secure_server):
    with grpc.insecure_channel(secure_server.target) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_streams_per_tenant_are_limited(secure_server):
    c = Client(secure_server.target, token=token("busy"))
    with c:
        s1, s2 = c.session(), c.session()
        s1.send_ticks(*script_levels("x1", [], ABC, 20))
        s2.send_ticks(*script_levels("x2", [], ABC, 20))
        code, details = code_of(lambda: publish(c, "x3"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_streams_per_tenant" in details
        with Client(secure_server.target, token=token("other-tenant")) as d:
            publish(d, "x3")                      # another tenant is not affected
        s1.close()
        publish(c, "x3")                          # a slot is free again
        s2.close()


def test_a_stream_over_its_rate_is_refused_batches_not_killed():
    with ServerThread(test_config(max_batches_per_s=5)) as srv, Client(srv.target) as c:
        ticks = script_levels("rl", [("a", 0, 2000)], ABC, 2000)
        responses = list(c.stream(pb.StreamRequest(batch_id=i + 1, ticks=[t])
                                  for i, t in enumerate(ticks[:30])))
        refused = [r for r in responses if r.rejections]
        assert len(responses) == 30 and 10 <= len(refused) <= 26
        assert all("max_batches_per_s=5" in r.rejections[0].message and
                   r.rejections[0].code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
                   for r in refused)
        time.sleep(0.5)
        late = list(c.stream([pb.StreamRequest(batch_id=99, ticks=[ticks[40]])]))
        assert not late[0].rejections


def test_token_create_command(keys, capsys):
    assert main(["token", "create", "--tenant", "t1", "--grant", "publish,watch", "--ttl", "2h",
                 "--rooms", "r-*", "--key", str(keys / "secret")]) == 0
    tok = capsys.readouterr().out.strip()
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"])
    assert claims["tenant"] == "t1" and claims["grants"] == ["publish", "watch"]
    assert claims["rooms"] == "r-*" and 7100 < claims["exp"] - time.time() <= 7200
    assert main(["token", "create", "--tenant", "t1", "--grant", "admin",
                 "--key", str(keys / "secret")]) == 2
    assert "grants must be among" in capsys.readouterr().err


# ----------------------------------------------------------------------------- TLS

def _cert(subject: str, key, issuer_cert=None, issuer_key=None, ca=False, server=False):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer_cert.subject if issuer_cert else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    kpem = lambda k: k.private_bytes(serialization.Encoding.PEM,  # noqa: E731
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, ca=True)
    for name, server in (("server", True), ("client", False)):
        k = ec.generate_private_key(ec.SECP256R1())
        (d / f"{name}.pem").write_bytes(pem(_cert(name, k, ca, ca_key, server=server)))
        (d / f"{name}.key").write_bytes(kpem(k))
    (d / "ca.pem").write_bytes(pem(ca))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("other-ca", other_key, ca=True)
    k = ec.generate_private_key(ec.SECP256R1())
    (d / "rogue.pem").write_bytes(pem(_cert("rogue", k, other_ca, other_key)))
    (d / "rogue.key").write_bytes(kpem(k))
    return d


def test_tls_serves_only_tls_clients(pki):
    cfg = test_config(tls_cert_file=str(pki / "server.pem"), tls_key_file=str(pki / "server.key"))
    with ServerThread(cfg) as srv:
        with Client(srv.target, tls_ca_file=str(pki / "ca.pem")) as c:
            publish(c, "tls-room")
            assert c.get_room("tls-room").speaker_id == "b"
        with Client(srv.target) as plain:
            assert code_of(lambda: plain.get_room("tls-room"))[0] == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki):
    cfg = test_config(tls_cert_file=str(pki / "server.pem"), tls_key_file=str(pki / "server.key"),
                      tls_client_ca_file=str(pki / "ca.pem"))
    with ServerThread(cfg) as srv:
        ca = str(pki / "ca.pem")
        with Client(srv.target, tls_ca_file=ca, tls_cert_file=str(pki / "client.pem"),
                    tls_key_file=str(pki / "client.key")) as c:
            publish(c, "mtls-room")
            assert c.get_room("mtls-room").speaker_id == "b"
        with Client(srv.target, tls_ca_file=ca) as no_cert:
            assert code_of(lambda: no_cert.get_room("mtls-room"))[0] == grpc.StatusCode.UNAVAILABLE
        with Client(srv.target, tls_ca_file=ca, tls_cert_file=str(pki / "rogue.pem"),
                    tls_key_file=str(pki / "rogue.key")) as rogue:
            assert code_of(lambda: rogue.get_room("mtls-room"))[0] == grpc.StatusCode.UNAVAILABLE


def test_an_oversized_message_is_resource_exhausted():
    with ServerThread(test_config(max_message_bytes=4096)) as srv, Client(srv.target) as c:
        big = pb.StreamRequest(batch_id=1, ticks=script_levels("big", [("a", 0, 2000)], ABC, 2000))
        assert big.ByteSize() > 4096
        code, details = code_of(lambda: list(c.stream([big])))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        small = pb.StreamRequest(batch_id=2, ticks=script_levels("big", [], ABC, 40))
        assert not list(c.stream([small]))[0].rejections       # the server is fine
