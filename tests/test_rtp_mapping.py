"""MapRtpSource / UnmapRtpSource: a media server says over gRPC which SSRC is which
participant, authorized like every other call (tenant, grant, room pattern), and RTP sent
to the ingest then switches that tenant's room."""
from __future__ import annotations

import socket
import time

import grpc
import pytest

from service.api import speakerswitch_pb2 as pb
from service.api import speakerswitch_pb2_grpc as pb_grpc

from conftest import ServerThread, call, test_config, token, token_server
from test_rtp import level_element, packet


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with token_server(tmp_path_factory, rtp_port=0) as s:
        yield s


def stub(server):
    return pb_grpc.SpeakerSwitchStub(grpc.insecure_channel(server.target))


def refused(server, method, request, tok) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call(server, method, request, tok)
    return e.value.code(), e.value.details()


def test_a_mapped_ssrc_speaks_in_the_tenants_room(server):
    got = call(server, "MapRtpSource", pb.RtpSource(ssrc=42, room_id="standup",
                                                    participant_id="alice"), token())
    assert (got.ssrc, got.room_id, got.participant_id, got.clock_rate_hz,
            got.audio_level_id, got.no_voice_activity) == (42, "standup", "alice", 48000, 1,
                                                           False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(40):  # 0.8 s of speech
            sock.sendto(packet(ssrc=42, seq=i, ts=960 * i, extension=level_element(20, True)),
                        ("127.0.0.1", server.running.rtp.port))
            time.sleep(0.02)
    time.sleep(0.2)
    state = call(server, "GetRoom", pb.GetRoomRequest(room_id="standup"), token())
    assert state.speaker_id == "alice"
    # another tenant does not see it
    code, _ = refused(server, "GetRoom", pb.GetRoomRequest(room_id="standup"),
                      token(tenant="other"))
    assert code == grpc.StatusCode.NOT_FOUND
    # unmapped: alice leaves the room
    removed = call(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(ssrc=42), token())
    assert removed.removed.participant_id == "alice"
    time.sleep(0.2)
    state = call(server, "GetRoom", pb.GetRoomRequest(room_id="standup"), token())
    assert [p.participant_id for p in state.participants] == []


def members(server, room: str) -> list[str]:
    state = call(server, "GetRoom", pb.GetRoomRequest(room_id=room), token())
    return sorted(p.participant_id for p in state.participants)


def test_a_mapped_participant_is_in_the_room_before_its_first_packet(server):
    """A media server reports a camera off or a pin before the participant is heard (a
    browser's first audio comes a second or so after it joins): the mapping joins it, and
    unmapping makes it leave whether or not it was ever heard."""
    call(server, "MapRtpSource", pb.RtpSource(ssrc=101, room_id="quiet", participant_id="ann"),
         token())
    assert members(server, "quiet") == ["ann"]  # no packet sent
    call(server, "MapRtpSource", pb.RtpSource(ssrc=102, room_id="quiet", participant_id="ann"),
         token())  # a second source of the same participant
    call(server, "MapRtpSource", pb.RtpSource(ssrc=103, room_id="quiet", participant_id="ben"),
         token())
    assert members(server, "quiet") == ["ann", "ben"]
    call(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(ssrc=101), token())
    assert members(server, "quiet") == ["ann", "ben"]  # still mapped by 102
    call(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(ssrc=102), token())
    assert members(server, "quiet") == ["ben"]
    # the SSRC moves to another participant: ben leaves, cy joins
    call(server, "MapRtpSource", pb.RtpSource(ssrc=103, room_id="quiet", participant_id="cy"),
         token())
    assert members(server, "quiet") == ["cy"]
    call(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(ssrc=103), token())
    assert members(server, "quiet") == []


def test_a_mapping_over_the_rooms_participant_limit_is_refused_and_not_made(tmp_path):
    with ServerThread(test_config(rtp_port=0, max_participants_per_room=1)) as s:
        st = stub(s)
        st.MapRtpSource(pb.RtpSource(ssrc=1, room_id="r", participant_id="p"), timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            st.MapRtpSource(pb.RtpSource(ssrc=2, room_id="r", participant_id="q"), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert e.value.details().startswith("participant_id: "), e.value.details()
        assert "max_participants_per_room" in e.value.details()
        assert sorted(s.running.rtp.ingest.sources) == [1]


def test_another_tenant_cannot_take_or_drop_an_ssrc(server):
    call(server, "MapRtpSource", pb.RtpSource(ssrc=7, room_id="r", participant_id="p"),
         token())
    code, details = refused(server, "MapRtpSource",
                            pb.RtpSource(ssrc=7, room_id="r", participant_id="q"),
                            token(tenant="other"))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "ssrc: 7" in details
    code, _ = refused(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(ssrc=7),
                      token(tenant="other"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert server.running.rtp.ingest.sources[7].participant_id == "p"


@pytest.mark.parametrize("request_, field", [
    (pb.RtpSource(ssrc=1, room_id="", participant_id="p"), "room_id"),
    (pb.RtpSource(ssrc=1, room_id="r", participant_id="x" * 200), "participant_id"),
    (pb.RtpSource(ssrc=1, room_id="r", participant_id="p", clock_rate_hz=5),
     "clock_rate_hz"),
    (pb.RtpSource(ssrc=1, room_id="r", participant_id="p", audio_level_id=300),
     "audio_level_id"),
    (pb.RtpSource(ssrc=1, room_id="r", participant_id="p", clock_rate_hz=44100, l16=True),
     "clock_rate_hz"),
])
def test_bad_mappings_name_the_field(server, request_, field):
    code, details = refused(server, "MapRtpSource", request_, token())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details


def test_an_l16_source_is_mapped_for_the_vad_path(server):
    got = call(server, "MapRtpSource", pb.RtpSource(ssrc=16, room_id="lin", participant_id="p",
                                                    clock_rate_hz=16000, l16=True), token())
    assert (got.clock_rate_hz, got.l16) == (16000, True)
    src = server.running.rtp.ingest.sources[16]
    assert (src.clock_rate_hz, src.l16) == (16000, True)
    call(server, "UnmapRtpSource", pb.UnmapRtpSourceRequest(ssrc=16), token())


def test_grants_and_room_patterns_apply(server):
    request = pb.RtpSource(ssrc=9, room_id="private-room", participant_id="p")
    code, _ = refused(server, "MapRtpSource", request, token(grants=("watch",)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = refused(server, "MapRtpSource", request, token(rooms="public-*"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = refused(server, "MapRtpSource", request, "not-a-token")
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert 9 not in server.running.rtp.ingest.sources


def test_a_server_without_rtp_ingest_says_so(tmp_path):
    with ServerThread(test_config()) as s:
        with pytest.raises(grpc.RpcError) as e:
            stub(s).MapRtpSource(pb.RtpSource(ssrc=1, room_id="r", participant_id="p"),
                                 timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "rtp_port" in e.value.details()
