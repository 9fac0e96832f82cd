"""MapRtpSource by sender (source_port, source_host) for a forwarder that cannot set or
report its SSRCs: every datagram from that UDP address is the participant, whatever its
SSRC; authorized and refused like a mapping by SSRC."""
from __future__ import annotations

import socket
import time

import grpc
import pytest

from service.api import speakerswitch_pb2 as pb

from conftest import call, token, token_server
from test_rtp import level_element, packet
from test_rtp_mapping import refused


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with token_server(tmp_path_factory, rtp_port=0) as s:
        yield s


def test_a_sender_mapped_by_its_port_speaks_whatever_its_ssrc(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        got = call(server, "MapRtpSource", pb.RtpSource(
            source_port=port, source_host="127.0.0.1", room_id="call", participant_id="caller",
            clock_rate_hz=48000), token())
        assert (got.ssrc, got.source_port, got.source_host, got.participant_id) == (
            0, port, "127.0.0.1", "caller")
        # 0.8 s of speech, the SSRC changing halfway, sent at once: placed by their RTP
        # timestamps, and the room's only source is past each tick at once (no sender
        # pacing that a busy machine could stretch into what looks like DTX)
        for i in range(40):
            ssrc = 111 if i < 20 else 222
            sock.sendto(packet(ssrc=ssrc, seq=i, ts=960 * i, extension=level_element(20, True)),
                        ("127.0.0.1", server.running.rtp.port))
    time.sleep(0.3)
    state = call(server, "GetRoom", pb.GetRoomRequest(room_id="call"), token())
    assert state.speaker_id == "caller"
    assert server.running.rtp.ingest.counts["unknown_ssrc"] == 0
    # unmapped by the same key; a mapping by SSRC of that number is another one
    code, details = refused(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(ssrc=port),
                            token())
    assert code == grpc.StatusCode.NOT_FOUND and f"ssrc: {port} is not mapped" in details
    removed = call(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(
        source_port=port, source_host="127.0.0.1"), token())
    assert (removed.removed.participant_id, removed.removed.source_port) == ("caller", port)
    time.sleep(0.2)
    state = call(server, "GetRoom", pb.GetRoomRequest(room_id="call"), token())
    assert [p.participant_id for p in state.participants] == []


def test_another_tenant_cannot_take_a_sender(server):
    call(server, "MapRtpSource", pb.RtpSource(source_port=6000, room_id="r",
                                              participant_id="p"), token())
    code, details = refused(server, "MapRtpSource", pb.RtpSource(
        source_port=6000, room_id="r", participant_id="q"), token(tenant="other"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "source_port: *:6000 is mapped by another tenant" in details
    code, _ = refused(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(source_port=6000),
                      token(tenant="other"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert server.running.rtp.ingest.sources[("", 6000)].participant_id == "p"


@pytest.mark.parametrize("request_, field", [
    (pb.RtpSource(source_port=70000, room_id="r", participant_id="p"), "source_port"),
    (pb.RtpSource(source_port=6002, source_host="media.example", room_id="r",
                  participant_id="p"), "source_host"),
    (pb.RtpSource(source_host="10.0.0.1", room_id="r", participant_id="p"), "source_host"),
    (pb.RtpSource(ssrc=5, source_port=6002, room_id="r", participant_id="p"), "ssrc"),
])
def test_bad_sender_mappings_name_the_field(server, request_, field):
    code, details = refused(server, "MapRtpSource", request_, token())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(f"{field}:"), details


def test_a_bad_unmap_names_the_field(server):
    code, details = refused(server, "UnmapRtpSource",
                            pb.UnmapRtpSourceRequest(source_port=70000), token())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("source_port:")
