"""UDP datagrams out of a packet capture (the classic libpcap format that tcpdump and
Wireshark write), for replaying a captured call's RTP: ``speakerswitch replay --rtp-pcap``.

Link types: Ethernet (with 802.1Q tags), Linux cooked (v1 and v2, ``tcpdump -i any``),
BSD loopback and raw IP; IPv4 (unfragmented) and IPv6 (UDP right after the fixed header).
Other packets are skipped. pcapng is refused with what to do.
"""
from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC_US, MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
PCAPNG_MAGIC = 0x0A0D0D0A
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP = 0, 1, 101, 108
LINK_SLL, LINK_SLL2, LINK_IPV4, LINK_IPV6 = 113, 276, 228, 229
ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN = 0x0800, 0x86DD, 0x8100
UDP = 17
MAX_RECORD_BYTES = 256 * 1024
"""A record larger than this is taken as corruption (snaplen is at most 256 KiB)."""


class PcapError(ValueError):
    """The file is not a capture this reads; the message names the file and why."""


@dataclass(frozen=True)
class Datagram:
    t_s: float        # capture time
    dst_port: int
    payload: bytes
    sender: tuple[str, int] = ("", 0)  # source address and port, as a socket reports them


def _ip(packet: bytes) -> tuple[int, bytes, tuple[str, int]] | None:
    """(destination port, UDP payload, (source address, source port)) of an IPv4 or IPv6
    packet, if it is UDP."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        flags_fragment = struct.unpack_from("!H", packet, 6)[0]
        if packet[9] != UDP or flags_fragment & 0x3FFF or len(packet) < ihl + 8:
            return None  # not UDP, or a fragment
        udp = packet[ihl:]
        host = packet[12:16]
    elif version == 6 and len(packet) >= 48:
        if packet[6] != UDP:
            return None  # extension headers are not followed
        udp = packet[40:]
        host = packet[8:24]
    else:
        return None
    source_port, port, length = struct.unpack_from("!HHH", udp)
    if length < 8 or length > len(udp):
        return None
    return port, udp[8:length], (str(ipaddress.ip_address(host)), source_port)


def _network_layer(link: int, frame: bytes) -> bytes | None:
    if link == LINK_ETHERNET:
        at, ethertype = 14, struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else 0
        while ethertype == ETHERTYPE_VLAN and len(frame) >= at + 4:
            ethertype = struct.unpack_from("!H", frame, at + 2)[0]
            at += 4
        return frame[at:] if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6) else None
    if link == LINK_SLL:
        return frame[16:]
    if link == LINK_SLL2:
        return frame[20:]
    if link in (LINK_NULL, LINK_LOOP):
        return frame[4:]
    if link in (LINK_RAW, LINK_IPV4, LINK_IPV6):
        return frame
    return None


def udp_datagrams(path: str) -> Iterator[Datagram]:
    """Every UDP datagram of the capture at ``path``, in capture order."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise PcapError(f"{path}: {e.strerror}") from None
    with f:
        head = f.read(24)
        if len(head) < 24:
            raise PcapError(f"{path}: not a packet capture (shorter than a pcap header)")
        for order in ("<", ">"):
            magic = struct.unpack(order + "I", head[:4])[0]
            if magic in (MAGIC_US, MAGIC_NS):
                break
        else:
            if struct.unpack("<I", head[:4])[0] == PCAPNG_MAGIC:
                raise PcapError(f"{path}: pcapng is not read; convert it: editcap -F pcap "
                                f"{path} out.pcap")
            raise PcapError(f"{path}: not a packet capture (no pcap magic number)")
        scale = 1e-9 if magic == MAGIC_NS else 1e-6
        link = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
        record = struct.Struct(order + "IIII")
        n = 0
        while True:
            rh = f.read(16)
            if not rh:
                return
            n += 1
            if len(rh) < 16:
                raise PcapError(f"{path}: record {n}: truncated header")
            sec, frac, caplen, _ = record.unpack(rh)
            if caplen > MAX_RECORD_BYTES:
                raise PcapError(f"{path}: record {n}: {caplen} bytes: not a capture record")
            frame = f.read(caplen)
            if len(frame) < caplen:
                raise PcapError(f"{path}: record {n}: truncated")
            ip = _network_layer(link, frame)
            udp = _ip(ip) if ip is not None else None
            if udp is not None:
                yield Datagram(sec + frac * scale, *udp)
