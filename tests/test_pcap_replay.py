"""``speakerswitch replay --rtp-pcap``: a captured call's RTP (a classic pcap, as tcpdump
writes it) through the RTP ingest, timed by the capture's clock: the decisions of the same
levels sent over gRPC."""
from __future__ import annotations

import json
import struct

import pytest

from service import cli
from service.tools import pcap

from conftest import script_levels
from test_rtp import level_element, packet
from test_rtp_ingest import ABC, TURNS, grpc_decisions, rtp_of


def ethernet_udp(payload: bytes, dst_port: int = 5004, vlan: bool = False,
                 src_port: int = 40000) -> bytes:
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
    tag = struct.pack("!HH", 0x8100, 7) if vlan else b""
    return bytes(6) + bytes(6) + tag + b"\x08\x00" + ip


def write_pcap(path, frames: list[tuple[float, bytes]], link: int = 1) -> None:
    out = struct.pack("<IHHiIII", pcap.MAGIC_US, 2, 4, 0, 0, 65535, link)
    for t, frame in frames:
        out += struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(frame), len(frame))
        out += frame
    path.write_bytes(out)


def test_a_captured_call_replays_as_its_levels_do(tmp_path, capsys):
    ticks = script_levels("captured", TURNS, ABC, 12000)
    ssrc_of = {p: 500 + i for i, p in enumerate(ABC)}
    frames = []
    for tick in ticks:
        for i, raw in enumerate(rtp_of(tick, ssrc_of, {"a": 9, "b": 2**32 - 100, "c": 0})):
            t = 1_700_000_000 + tick.timestamp_ms / 1000 + 0.001 * i
            frames.append((t, ethernet_udp(raw, vlan=i == 1)))
        frames.append((frames[-1][0], ethernet_udp(b"not rtp")))  # counted, dropped
    write_pcap(tmp_path / "call.pcap", frames)
    (tmp_path / "map.json").write_text(json.dumps({"sources": [
        {"ssrc": ssrc, "room": "captured", "participant": p} for p, ssrc in ssrc_of.items()]}))
    out = tmp_path / "out.jsonl"
    assert cli.main(["replay", "--rtp-pcap", str(tmp_path / "call.pcap"), "--rtp-map",
                     str(tmp_path / "map.json"), "--out", str(out)]) == 0
    got = [(d["t_ms"], d["speaker"]) for d in map(json.loads, out.read_text().splitlines())]
    assert got == grpc_decisions(ticks)


@pytest.mark.parametrize("content, message", [
    (b"", "not a packet capture"),
    (b"\x0a\x0d\x0d\x0a" + bytes(40), "pcapng is not read"),
    (b"GIF89a" + bytes(40), "no pcap magic"),
])
def test_what_is_not_a_capture_is_one_line(tmp_path, capsys, content, message):
    (tmp_path / "x.pcap").write_bytes(content)
    (tmp_path / "map.json").write_text(json.dumps({"sources": [
        {"ssrc": 1, "room": "r", "participant": "p"}]}))
    code = cli.main(["replay", "--rtp-pcap", str(tmp_path / "x.pcap"), "--rtp-map",
                     str(tmp_path / "map.json"), "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and "x.pcap" in err[0], err


def test_rtp_pcap_needs_its_map(tmp_path, capsys):
    write_pcap(tmp_path / "call.pcap", [])
    code = cli.main(["replay", "--rtp-pcap", str(tmp_path / "call.pcap"), "--out", "-"])
    assert code == 2 and "--rtp-map" in capsys.readouterr().err


def test_linux_cooked_and_truncated_records(tmp_path):
    raw = packet(ssrc=1, extension=level_element(20, True))
    udp = ethernet_udp(raw)[14:]
    frame = bytes(14) + b"\x08\x00" + udp  # SLL: 16-byte header, protocol last
    write_pcap(tmp_path / "sll.pcap", [(1.0, frame)], link=pcap.LINK_SLL)
    (d,) = pcap.udp_datagrams(str(tmp_path / "sll.pcap"))
    assert (d.dst_port, d.payload, d.sender) == (5004, raw, ("10.0.0.1", 40000))
    data = (tmp_path / "sll.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:-5])
    with pytest.raises(pcap.PcapError, match="record 1: truncated"):
        list(pcap.udp_datagrams(str(tmp_path / "cut.pcap")))


def test_a_call_mapped_by_sender_port_replays_whatever_its_ssrcs(tmp_path):
    """A forwarder that picks its own SSRCs, and changes them (a new SSRC every 4 s), sends
    each participant from its own port: the map says who by port."""
    ticks = script_levels("captured", TURNS, ABC, 12000)
    port_of = {p: 41000 + 2 * i for i, p in enumerate(ABC)}
    frames = []
    for tick in ticks:
        epoch = tick.timestamp_ms // 4000
        ssrc_of = {p: 7000 + 10 * epoch + i for i, p in enumerate(ABC)}
        for i, raw in enumerate(rtp_of(tick, ssrc_of, {"a": 9, "b": 2**32 - 100, "c": 0})):
            who = ABC[[ssrc_of[p] for p in ABC].index(struct.unpack_from("!I", raw, 8)[0])]
            t = 1_700_000_000 + tick.timestamp_ms / 1000 + 0.001 * i
            frames.append((t, ethernet_udp(raw, src_port=port_of[who])))
    write_pcap(tmp_path / "call.pcap", frames)
    (tmp_path / "map.json").write_text(json.dumps({"sources": [
        {"source_port": port, "source_host": "10.0.0.1", "room": "captured",
         "participant": p} for p, port in port_of.items()]}))
    out = tmp_path / "out.jsonl"
    assert cli.main(["replay", "--rtp-pcap", str(tmp_path / "call.pcap"), "--rtp-map",
                     str(tmp_path / "map.json"), "--out", str(out)]) == 0
    got = [(d["t_ms"], d["speaker"]) for d in map(json.loads, out.read_text().splitlines())]
    assert got == grpc_decisions(ticks)
