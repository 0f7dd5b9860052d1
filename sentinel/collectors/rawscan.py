"""Raw-socket plumbing shared by the SYN scanner and the ICMP pinger: packets, checksums, BPF filters.

Only `ScopedNetwork` drives these (through `SynScanner` and `IcmpPinger`), after its scope check and rate
limiter have admitted each packet; the engines check scope once more right before `sendto`.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
import time
from dataclasses import dataclass

SO_ATTACH_FILTER = 26
IPV6_CHECKSUM = getattr(socket, "IPV6_CHECKSUM", 7)

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
_MSS_OPTION = b"\x02\x04\x05\xb4"  # MSS 1460, as a real stack would offer: some firewalls drop bare SYNs
_SYN_WINDOW = 64240


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_syn(sport: int, dport: int, seq: int, src4: bytes | None = None, dst4: bytes | None = None) -> bytes:
    """A TCP SYN header with an MSS option. For IPv4 pass both addresses (the checksum covers them);
    for IPv6 leave them out: the kernel fills the checksum in (IPV6_CHECKSUM)."""
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 6 << 4, TCP_SYN, _SYN_WINDOW, 0, 0) + _MSS_OPTION
    if src4 is None or dst4 is None:
        return header
    pseudo = src4 + dst4 + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
    return header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]


def icmp_echo_request(ident: int, seq: int, payload: bytes, v6: bool) -> bytes:
    """Echo request (type 8, or 128 for ICMPv6 whose checksum the kernel computes)."""
    kind = 128 if v6 else 8
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:
        return header + payload
    return struct.pack("!BBHHH", kind, 0, checksum(header + payload), ident, seq) + payload


@dataclass(frozen=True, slots=True)
class TcpAnswer:
    source: str
    sport: int
    dport: int
    ack: int
    flags: int


def ipv4_payload(packet: bytes) -> tuple[str, int, bytes] | None:
    """(source address, protocol, payload) of an IPv4 packet as a raw socket delivers it; None if malformed."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        return None
    return socket.inet_ntoa(packet[12:16]), packet[9], packet[ihl:]


def parse_tcp(source: str, segment: bytes) -> TcpAnswer | None:
    if len(segment) < 20:
        return None
    sport, dport, _seq, ack, _off, flags = struct.unpack_from("!HHIIBB", segment)
    return TcpAnswer(source, sport, dport, ack, flags)


def parse_echo_reply(segment: bytes, v6: bool) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply; None for any other ICMP message."""
    if len(segment) < 8 or segment[0] != (129 if v6 else 0) or segment[1] != 0:
        return None
    ident, seq = struct.unpack_from("!HH", segment, 4)
    return ident, seq


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _attach_bpf(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program so the kernel drops everything but our answers before Python sees it."""
    insns = (_SockFilter * len(program))(*(_SockFilter(*ins) for ins in program))
    prog = _SockFprog(len(program), insns)
    sock.setsockopt(
        socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(ctypes.string_at(ctypes.addressof(prog), ctypes.sizeof(prog)))
    )


# classic BPF opcodes used below
_LDX_MSH = 0xB1  # X = 4 * (pkt[k] & 0x0f): the IPv4 header length
_LDH_IND = 0x48  # A = half word at X + k
_LDH_ABS = 0x28  # A = half word at k
_JEQ_K = 0x15
_RET_K = 0x06


#: for sending sockets: a raw socket gets a copy of every inbound packet of its protocol unless told not to
DROP_ALL = [(_RET_K, 0, 0, 0)]


def tcp_port_filter(port: int, v6: bool) -> list[tuple[int, int, int, int]]:
    """Accept only TCP segments to `port` (raw IPv4 sockets see the IP header, raw IPv6 sockets do not)."""
    load = [(_LDH_ABS, 0, 0, 2)] if v6 else [(_LDX_MSH, 0, 0, 0), (_LDH_IND, 0, 0, 2)]
    return [*load, (_JEQ_K, 0, 1, port), (_RET_K, 0, 0, 0xFFFF), (_RET_K, 0, 0, 0)]


def open_raw(family: int, proto: int, bpf: list[tuple[int, int, int, int]] | None = None) -> socket.socket:
    """A non-blocking raw socket with a large receive buffer (answers arrive in bursts)."""
    sock = socket.socket(family, socket.SOCK_RAW, proto)
    try:
        if bpf is not None:
            _attach_bpf(sock, bpf)
        if family == socket.AF_INET6 and proto == socket.IPPROTO_TCP:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 16)
        if bpf != DROP_ALL:  # receiving sockets: stamp each answer on arrival
            enable_timestamps(sock)
        _grow_buffers(sock)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


SO_RCVBUFFORCE, SO_SNDBUFFORCE = 33, 32
_BUFFER_BYTES = 8 << 20
SO_MEMINFO = 55  # Linux: u32[SK_MEMINFO_VARS]; index 8 is sk_drops, /proc/net/raw's "drops" column
_MEMINFO_VARS, _MEMINFO_DROPS = 9, 8
#: what one queued answer costs a raw receive buffer (the skb's truesize, as the kernel charges it against
#: SO_RCVBUF): a SYN-ACK or RST arriving over veth measures 832 bytes; taken well above that for NIC drivers
#: that allocate bigger receive buffers. Where it is still too low, the kernel's drop count says so and the
#: SYNs whose answers may have been dropped are resent (`syn_scan.AnswerLost`).
ANSWER_TRUESIZE = 2048


def _grow_buffers(sock: socket.socket) -> None:
    """Large buffers: answers to thousands of SYNs arrive in bursts while the event loop is busy elsewhere.
    The FORCE options pass net.core.rmem_max (raw-socket users are privileged); fall back to the capped ones."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, _BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, _BUFFER_BYTES)


def socket_drops(sock: socket.socket) -> int | None:
    """Packets the kernel dropped for this socket because its receive buffer was full (sk_drops: the drops
    column of /proc/net/raw, what SO_RXQ_OVFL reports); None where the kernel does not tell."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO_VARS * 4)
    except OSError:
        return None
    if len(raw) < _MEMINFO_VARS * 4:
        return None
    return int(struct.unpack_from(f"={_MEMINFO_VARS}I", raw)[_MEMINFO_DROPS])


def receive_capacity(sock: socket.socket) -> int:
    """How many answers the socket's receive buffer holds before the kernel drops the next one."""
    rcvbuf = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))  # as granted (the kernel doubles it)
    return max(1, rcvbuf // ANSWER_TRUESIZE)


# -- receive timestamps ------------------------------------------------------------------------
# Round-trip times are measured between the send stamp (taken right at sendto) and the kernel's receive stamp
# of the answer, so time the event loop spends elsewhere before it reads the socket is not counted.
SO_TIMESTAMP, SO_TIMESTAMPNS = 29, 35  # Linux: SCM_TIMESTAMP carries a timeval, SCM_TIMESTAMPNS a timespec
_ANC_BYTES = socket.CMSG_SPACE(16)


def enable_timestamps(sock: socket.socket) -> int:
    """Ask the kernel to stamp each received packet (nanoseconds if it can); returns the option used, 0 if none."""
    for option in (SO_TIMESTAMPNS, SO_TIMESTAMP):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        except OSError:
            continue
        if not _arrival_stamps.checked:  # once a process: a kernel that never turns them on costs one wait
            _arrival_stamps.checked = True
            await_arrival_stamps(option)
        return option
    return 0


class _ArrivalStamps:
    checked = False
    on = False  # once seen on, the kernel keeps them on while any socket (this one) asks for them


_arrival_stamps = _ArrivalStamps()
#: how long `await_arrival_stamps` waits for the kernel at most (it takes well under a millisecond when idle)
ARRIVAL_STAMPS_WAIT_S = 0.2


def await_arrival_stamps(option: int = SO_TIMESTAMPNS) -> bool:
    """Wait until the kernel stamps packets when they arrive. The first socket that asks for stamps only
    schedules that (Linux turns it on from a work queue); until then a packet is stamped when it is read,
    so a reply read late (the event loop busy elsewhere) would count the delay in its round-trip time.
    Checked with loopback datagrams: one read a while after it was sent must carry an earlier stamp."""
    deadline = time.monotonic() + ARRIVAL_STAMPS_WAIT_S
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.setsockopt(socket.SOL_SOCKET, option, 1)
            rx.bind(("127.0.0.1", 0))
            rx.settimeout(ARRIVAL_STAMPS_WAIT_S)
            while time.monotonic() < deadline:
                tx.sendto(b"stamp?", rx.getsockname())
                time.sleep(0.002)  # the datagram is queued by now: an arrival stamp is older than the read
                before = time.time_ns()
                _data, ancdata, _flags, _peer = rx.recvmsg(16, _ANC_BYTES)
                if received_at(ancdata) < before:
                    _arrival_stamps.on = True
                    break
    except OSError:  # no loopback here (a bare namespace): nothing to wait with
        return False
    return _arrival_stamps.on


def wall_ns() -> int:
    """The send stamp: CLOCK_REALTIME, the clock of the kernel's receive stamps."""
    return time.time_ns()


_TIMESPEC = struct.Struct("@qq")  # timespec / timeval: two native longs


def received_at(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The kernel receive stamp (ns, CLOCK_REALTIME) from recvmsg ancillary data; now when there is none."""
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET or len(data) < 16:
            continue
        seconds: int
        fraction: int
        seconds, fraction = _TIMESPEC.unpack_from(data)
        if kind == SO_TIMESTAMPNS:
            return seconds * 1_000_000_000 + fraction
        if kind == SO_TIMESTAMP:
            return seconds * 1_000_000_000 + fraction * 1000
    return time.time_ns()


def recv_stamped(sock: socket.socket, size: int) -> tuple[bytes, tuple[str, int] | tuple[str, int, int, int], int]:
    """(packet, peer, kernel receive time in ns) of one datagram; raises BlockingIOError when none is queued."""
    data, ancdata, _flags, peer = sock.recvmsg(size, _ANC_BYTES)
    return data, peer, received_at(ancdata)


async def send_stamped(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    packet: bytes,
    target: tuple[str, int] | tuple[str, int, int, int],
) -> int:
    """Send one raw packet; return the wall-clock stamp (ns) taken right at the sendto that sent it."""
    stamp = wall_ns()
    try:
        sock.sendto(packet, target)
    except (BlockingIOError, InterruptedError):  # send buffer full: wait for room, stamp the real send
        await loop.sock_sendto(sock, packet, target)
        stamp = wall_ns()
    return stamp


def elapsed_ms(sent_ns: int, received_ns: int) -> float:
    return max(0.0, (received_ns - sent_ns) / 1e6)


def source_address(destination: str) -> str:
    """The local address the kernel would use towards `destination` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in destination else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((destination, 9))
        return str(probe.getsockname()[0])
