"""An independent SIP UAC + RTP test peer.

This is deliberately *not* built on ``voxlab.sip``: it is a second, small,
independent implementation (string templates and minimal header parsing) that
keeps the server honest.  Only the G.711 tables and RTP/RFC 4733 packet
helpers come from ``voxlab.media``.

Blocking sockets with timeouts and a couple of daemon threads, no reactor, so
it works from plain pytest and from benchmark scripts::

    with SipUA("127.0.0.1", 5070) as ua:
        call = ua.call("echo")                 # INVITE ... 200, ACK
        call.rtp.send_audio(tone)               # paced 20 ms packets
        heard = call.rtp.received_audio()       # decoded, ordered by seq
        call.bye()

Errors: a final response >= 300 raises :class:`SipError` carrying the status;
a transaction that gets no answer raises :class:`SipTimeout`.
"""

from __future__ import annotations

import queue
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from voxlab.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voxlab.media.rtp import RtpPacket, RtpParseError, RtpSender

__all__ = [
    "SipError",
    "SipTimeout",
    "SipMessage",
    "SipUA",
    "Call",
    "RtpStream",
    "free_rtp_port",
    "sdp_offer",
    "parse_sdp",
]

T1 = 0.5
CRLF = "\r\n"

# compact header forms (RFC 3261 7.3.3)
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length", "c": "content-type", "k": "supported", "s": "subject",
            "e": "content-encoding"}

_CODECS = {
    "PCMU": (0, ulaw_encode, ulaw_decode),
    "PCMA": (8, alaw_encode, alaw_decode),
}
_DECODERS = {0: ulaw_decode, 8: alaw_decode}
DTMF_EVENTS = "0123456789*#ABCD"


class SipError(Exception):
    """A SIP transaction ended with a final response >= 300."""

    def __init__(self, status: int, reason: str = "", response: "SipMessage | None" = None,
                 method: str = "INVITE") -> None:
        self.status = status
        self.reason = reason
        self.response = response
        self.method = method
        super().__init__(f"{method} failed: {status} {reason}".strip())


class SipTimeout(SipError, TimeoutError):
    """No (final) response arrived in time."""

    def __init__(self, what: str, method: str = "INVITE") -> None:
        SipError.__init__(self, 408, what, None, method)
        self.args = (f"{method}: {what}",)


# --------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------

class SipMessage:
    """Minimal SIP message: start line, ordered headers, body."""

    def __init__(self, start_line: str, headers: list[tuple[str, str]] | None = None,
                 body: bytes = b"") -> None:
        self.start_line = start_line
        self.headers = list(headers or [])
        self.body = body
        self.source: tuple | None = None     # (host, port) it came from
        self.received_at = 0.0               # time.perf_counter() of arrival

    # -- start line
    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def is_request(self) -> bool:
        return not self.is_response

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ", 2)[1]) if self.is_response else 0

    @property
    def reason(self) -> str:
        parts = self.start_line.split(" ", 2)
        return parts[2] if self.is_response and len(parts) > 2 else ""

    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0] if self.is_request else self.cseq[1]

    @property
    def uri(self) -> str:
        return self.start_line.split(" ")[1] if self.is_request else ""

    # -- headers
    @staticmethod
    def _norm(name: str) -> str:
        n = name.strip().lower()
        return _COMPACT.get(n, n)

    def get(self, name: str, default: str | None = None) -> str | None:
        n = self._norm(name)
        for k, v in self.headers:
            if self._norm(k) == n:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (not inside
        <> or quotes)."""
        n = self._norm(name)
        out: list[str] = []
        for k, v in self.headers:
            if self._norm(k) == n:
                out.extend(_split_commas(v))
        return out

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    @property
    def cseq(self) -> tuple[int, str]:
        num, method = self["CSeq"].split()
        return int(num), method.upper()

    @property
    def call_id(self) -> str:
        return self["Call-ID"].strip()

    @property
    def branch(self) -> str:
        via = self.get_all("Via")
        return _param(via[0], "branch") if via else ""

    def tag(self, header: str) -> str:
        return _param(self.get(header, ""), "tag")

    # -- wire
    @classmethod
    def parse(cls, data: bytes) -> "SipMessage":
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = data.partition(b"\n\n")
        lines = head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            raise ValueError("empty SIP message")
        start = lines[0].strip()
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:   # folded continuation
                k, v = headers[-1]
                headers[-1] = (k, v + " " + line.strip())
                continue
            k, colon, v = line.partition(":")
            if colon:
                headers.append((k.strip(), v.strip()))
        msg = cls(start, headers, body)
        cl = msg.get("Content-Length")
        if cl is not None and cl.strip().isdigit():
            msg.body = body[: int(cl)]
        return msg

    def to_bytes(self) -> bytes:
        body = self.body or b""
        hdrs = [(k, v) for k, v in self.headers if self._norm(k) != "content-length"]
        hdrs.append(("Content-Length", str(len(body))))
        text = self.start_line + CRLF + "".join(f"{k}: {v}{CRLF}" for k, v in hdrs) + CRLF
        return text.encode() + body

    def __repr__(self) -> str:
        return f"<SipMessage {self.start_line!r}>"

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8", "replace")


def _split_commas(value: str) -> list[str]:
    out, cur, depth, quote = [], [], 0, False
    for ch in value:
        if ch == '"':
            quote = not quote
        elif not quote and ch == "<":
            depth += 1
        elif not quote and ch == ">":
            depth -= 1
        if ch == "," and not quote and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def _param(header_value: str | None, name: str) -> str:
    """A ;name=value parameter of a header value (outside the <uri>)."""
    if not header_value:
        return ""
    rest = header_value
    if ">" in rest:
        rest = rest[rest.rindex(">") + 1:]
    m = re.search(r";\s*" + re.escape(name) + r"\s*=\s*([^;,\s]+)", rest, re.I)
    return m.group(1) if m else ""


def _uri_of(name_addr: str) -> str:
    """The URI inside a name-addr (<sip:...>) or an addr-spec."""
    m = re.search(r"<([^>]*)>", name_addr)
    if m:
        return m.group(1).strip()
    return name_addr.split(";", 1)[0].strip()


def _host_port(uri: str, default_port: int = 5060) -> tuple[str, int]:
    m = re.match(r"sips?:(?:[^@;]*@)?(\[[^\]]+\]|[^:;>?]+)(?::(\d+))?", uri.strip())
    if not m:
        raise ValueError(f"cannot find host in URI {uri!r}")
    return m.group(1).strip("[]"), int(m.group(2) or default_port)


def _new_token(n: int = 10) -> str:
    return "%0*x" % (n, random.getrandbits(4 * n))


def new_branch() -> str:
    return "z9hG4bK" + _new_token(16)


def frame_stream(buffer: bytearray) -> bytes | None:
    """Take one complete SIP message off a TCP byte stream, or None.

    Leading CRLFs (keep-alives) are dropped.  Framing is by Content-Length
    (mandatory on stream transports)."""
    while buffer[:2] == b"\r\n":
        del buffer[:2]
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("utf-8", "replace")
    m = re.search(r"^(?:content-length|l)\s*:\s*(\d+)\s*$", head, re.I | re.M)
    length = int(m.group(1)) if m else 0
    total = end + 4 + length
    if len(buffer) < total:
        return None
    data = bytes(buffer[:total])
    del buffer[:total]
    return data


# --------------------------------------------------------------------------
# SDP
# --------------------------------------------------------------------------

def sdp_offer(ip: str, port: int, codecs=("PCMU", "PCMA"), dtmf_pt: int | None = 101,
              ptime: int = 20, session_id: int | None = None, direction: str = "sendrecv") -> bytes:
    """An audio offer: the G.711 codecs (in preference order), RFC 4733."""
    sid = session_id if session_id is not None else random.randint(1, 2**31)
    pts = [str(_CODECS[c][0]) for c in codecs]
    lines = ["v=0", f"o=voxpeer {sid} {sid} IN IP4 {ip}", "s=voxpeer", f"c=IN IP4 {ip}",
             "t=0 0"]
    if dtmf_pt is not None:
        pts.append(str(dtmf_pt))
    lines.append(f"m=audio {port} RTP/AVP {' '.join(pts)}")
    for c in codecs:
        lines.append(f"a=rtpmap:{_CODECS[c][0]} {c}/8000")
    if dtmf_pt is not None:
        lines.append(f"a=rtpmap:{dtmf_pt} telephone-event/8000")
        lines.append(f"a=fmtp:{dtmf_pt} 0-16")
    lines.append(f"a=ptime:{ptime}")
    lines.append(f"a={direction}")
    return (CRLF.join(lines) + CRLF).encode()


@dataclass
class SdpAudio:
    ip: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)   # pt -> "PCMU/8000"
    direction: str = "sendrecv"

    @property
    def codec(self) -> str | None:
        """First G.711 codec of the m-line (the answerer's choice)."""
        for pt in self.payload_types:
            name = self.rtpmap.get(pt, {0: "PCMU/8000", 8: "PCMA/8000"}.get(pt, ""))
            name = name.split("/")[0].upper()
            if name in _CODECS:
                return name
        return None

    @property
    def telephone_event_pt(self) -> int | None:
        for pt in self.payload_types:
            if self.rtpmap.get(pt, "").lower().startswith("telephone-event/8000"):
                return pt
        return None


def parse_sdp(body: bytes | str) -> SdpAudio | None:
    """The first audio stream of an SDP body (None if there is none)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    session_ip = None
    audio: SdpAudio | None = None
    in_audio = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        k, v = line[0], line[2:]
        if k == "m":
            if audio is not None:          # only the first audio m-line
                in_audio = False
                if v.startswith("audio"):
                    continue
                continue
            parts = v.split()
            if parts[0] == "audio":
                audio = SdpAudio(session_ip or "", int(parts[1]),
                                 [int(p) for p in parts[3:] if p.isdigit()])
                in_audio = True
            else:
                in_audio = False
        elif k == "c":
            ip = v.split()[-1].split("/")[0]
            if audio is None:
                session_ip = ip
            elif in_audio:
                audio.ip = ip
        elif k == "a" and in_audio and audio is not None:
            if v.startswith("rtpmap:"):
                pt, _, enc = v[7:].partition(" ")
                if pt.strip().isdigit():
                    audio.rtpmap[int(pt)] = enc.strip()
            elif v in ("sendrecv", "sendonly", "recvonly", "inactive"):
                audio.direction = v
    if audio is not None and not audio.ip:
        audio.ip = session_ip or ""
    return audio


# --------------------------------------------------------------------------
# transports
# --------------------------------------------------------------------------

class _Transport:
    name = "UDP"

    def send(self, data: bytes, addr: tuple | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def recv(self, timeout: float) -> tuple[bytes, tuple] | None:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError


class _UdpTransport(_Transport):
    name = "UDP"

    def __init__(self, local_ip: str, remote: tuple[str, int]) -> None:
        self.remote = remote
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        self.local = self.sock.getsockname()

    def send(self, data: bytes, addr: tuple | None = None) -> None:
        self.sock.sendto(data, addr or self.remote)

    def recv(self, timeout: float):
        self.sock.settimeout(timeout)
        try:
            data, addr = self.sock.recvfrom(65535)
        except (socket.timeout, BlockingIOError):
            return None
        return data, addr

    def close(self) -> None:
        self.sock.close()


class _TcpTransport(_Transport):
    name = "TCP"

    def __init__(self, local_ip: str, remote: tuple[str, int], connect_timeout: float = 5.0) -> None:
        self.remote = remote
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((local_ip, 0))
        self.sock.settimeout(connect_timeout)
        self.sock.connect(remote)
        self.local = self.sock.getsockname()
        self.buffer = bytearray()
        self.closed = False
        self._send_lock = threading.Lock()

    def send(self, data: bytes, addr: tuple | None = None) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def recv(self, timeout: float):
        msg = frame_stream(self.buffer)
        if msg is not None:
            return msg, self.remote
        if self.closed:
            time.sleep(min(timeout, 0.05))
            return None
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65535)
        except (socket.timeout, BlockingIOError):
            return None
        except OSError:
            self.closed = True
            return None
        if not chunk:
            self.closed = True
            return None
        self.buffer += chunk
        msg = frame_stream(self.buffer)
        return (msg, self.remote) if msg is not None else None

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --------------------------------------------------------------------------
# RTP
# --------------------------------------------------------------------------

def free_rtp_port(ip: str = "127.0.0.1", lo: int = 33000, hi: int = 59998,
                  tries: int = 200) -> socket.socket:
    """A UDP socket bound to a free even port (RTP convention); kept bound, so it may come
    from the ephemeral range, above the servers' RTP blocks (see ``free_udp_ports``)."""
    for _ in range(tries):
        port = random.randrange(lo, hi, 2)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((ip, port))
        except OSError:
            s.close()
            continue
        return s
    raise OSError("no free even UDP port for RTP")


@dataclass
class ReceivedPacket:
    arrival: float          # time.perf_counter()
    packet: RtpPacket
    source: tuple


class RtpStream:
    """One RTP stream: a socket, a paced sender and a background receiver.

    Everything received is kept (``packets``); :meth:`received_audio` decodes
    the audio packets, ordered by sequence number, into one int16 array.
    """

    def __init__(self, local_ip: str = "127.0.0.1", sock: socket.socket | None = None) -> None:
        self.sock = sock or free_rtp_port(local_ip)
        self.local = self.sock.getsockname()
        self.remote: tuple[str, int] | None = None
        self.codec = "PCMU"
        self.payload_type = 0
        self.dtmf_pt: int | None = 101
        self.sender = RtpSender(0)
        self.packets: list[ReceivedPacket] = []
        self.first_packet = threading.Event()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive_loop, daemon=True,
                                        name=f"rtp-rx-{self.local[1]}")
        self.send_started: float | None = None     # perf_counter of first packet sent
        self.late_sends = 0                        # packets sent > 5 ms behind schedule
        self._thread.start()

    # -- configuration from SDP
    def configure(self, remote: tuple[str, int], codec: str, dtmf_pt: int | None) -> None:
        self.remote = remote
        self.codec = codec
        self.payload_type = _CODECS[codec][0]
        self.dtmf_pt = dtmf_pt
        self.sender.payload_type = self.payload_type

    # -- receiving
    def _receive_loop(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            now = time.perf_counter()
            try:
                pkt = RtpPacket.parse(data)
            except RtpParseError:
                continue
            if 72 <= pkt.payload_type <= 95:  # RTCP that slipped onto the RTP port
                continue
            with self._lock:
                self.packets.append(ReceivedPacket(now, pkt, addr))
            self.first_packet.set()

    def received(self) -> list[ReceivedPacket]:
        with self._lock:
            return list(self.packets)

    def wait_packets(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` packets have arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.packets) >= count:
                    return True
            time.sleep(0.01)
        return False

    def wait_quiet(self, quiet: float = 0.3, timeout: float = 5.0) -> None:
        """Wait until nothing has arrived for ``quiet`` seconds (the echo tail)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                last = self.packets[-1].arrival if self.packets else None
            if last is not None and time.perf_counter() - last >= quiet:
                return
            if last is None and time.monotonic() + quiet > deadline:
                return
            time.sleep(0.02)

    @staticmethod
    def _ordered(pkts: list[ReceivedPacket]) -> list[tuple[int, ReceivedPacket]]:
        """(extended sequence, packet) sorted; duplicates dropped."""
        out: dict[int, ReceivedPacket] = {}
        ext_prev = None
        for rp in pkts:
            seq = rp.packet.sequence
            if ext_prev is None:
                ext = seq
            else:
                # choose the extended value closest to the previous one
                base = ext_prev - (ext_prev & 0xFFFF)
                cands = (base + seq - 0x10000, base + seq, base + seq + 0x10000)
                ext = min(cands, key=lambda c: abs(c - ext_prev))
            ext_prev = ext
            out.setdefault(ext, rp)
        return sorted(out.items())

    def audio_packets(self) -> list[ReceivedPacket]:
        return [rp for rp in self.received() if rp.packet.payload_type in _DECODERS]

    def received_audio(self, fill_gaps: bool = True) -> np.ndarray:
        """All received G.711 audio decoded to int16, ordered by RTP sequence
        number (per SSRC, in order of first appearance).  Missing packets are
        filled with silence of the previous packet's length if ``fill_gaps``."""
        by_ssrc: dict[int, list[ReceivedPacket]] = {}
        for rp in self.audio_packets():
            by_ssrc.setdefault(rp.packet.ssrc, []).append(rp)
        chunks: list[np.ndarray] = []
        for pkts in by_ssrc.values():
            prev_seq = None
            prev_len = 160
            for ext, rp in self._ordered(pkts):
                if fill_gaps and prev_seq is not None and ext - prev_seq > 1:
                    chunks.append(np.zeros((ext - prev_seq - 1) * prev_len, np.int16))
                pcm = _DECODERS[rp.packet.payload_type](rp.packet.payload)
                chunks.append(pcm)
                prev_seq, prev_len = ext, len(rp.packet.payload) or 160
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def packet_levels(self) -> list[tuple[float, float]]:
        """(arrival perf_counter, RMS dBFS) of every audio packet, by arrival."""
        out = []
        for rp in self.audio_packets():
            pcm = _DECODERS[rp.packet.payload_type](rp.packet.payload).astype(np.float64)
            r = float(np.sqrt(np.mean(pcm * pcm))) if pcm.size else 0.0
            out.append((rp.arrival, 20 * np.log10(r / 32768) if r > 0 else -200.0))
        return out

    def received_events(self) -> list[tuple[str, bool, int]]:
        """RFC 4733 telephone-events received: (digit, end, duration) per
        packet, ordered by arrival."""
        out = []
        for rp in self.received():
            pt = rp.packet.payload_type
            if pt in _DECODERS or len(rp.packet.payload) < 4:
                continue
            if self.dtmf_pt is not None and pt != self.dtmf_pt:
                continue
            p = rp.packet.payload
            ev = p[0]
            digit = DTMF_EVENTS[ev] if ev < 16 else str(ev)
            out.append((digit, bool(p[1] & 0x80), int.from_bytes(p[2:4], "big")))
        return out

    def received_digits(self) -> str:
        """Distinct RFC 4733 events received (one per event timestamp)."""
        seen: dict[tuple[int, int], str] = {}
        for rp in self.received():
            pt = rp.packet.payload_type
            if pt in _DECODERS or len(rp.packet.payload) < 4:
                continue
            if self.dtmf_pt is not None and pt != self.dtmf_pt:
                continue
            ev = rp.packet.payload[0]
            seen.setdefault((rp.packet.ssrc, rp.packet.timestamp),
                            DTMF_EVENTS[ev] if ev < 16 else "?")
        return "".join(seen.values())

    # -- sending
    def _send(self, data: bytes) -> None:
        if self.remote is None:
            raise RuntimeError("RTP stream has no remote address (no SDP answer yet)")
        self.sock.sendto(data, self.remote)

    def send_audio(self, signal: np.ndarray, frame_ms: int = 20, realtime: bool = True,
                   stop: threading.Event | None = None) -> int:
        """Send int16 ``signal`` as ``frame_ms`` G.711 packets (the last one
        padded with silence), paced in real time against perf_counter (each
        packet is due at t0 + i*frame_ms, so there is no drift).  Returns the
        number of packets sent."""
        encode = _CODECS[self.codec][1]
        spf = 8 * frame_ms
        pcm = np.asarray(signal, dtype=np.int16)
        n = max(1, -(-len(pcm) // spf))
        if len(pcm) < n * spf:
            pcm = np.concatenate([pcm, np.zeros(n * spf - len(pcm), np.int16)])
        period = frame_ms / 1000.0
        sleep, clock = time.sleep, time.perf_counter
        with self._send_lock:
            self.sender.samples_per_frame = spf
            t0 = clock()
            if self.send_started is None:
                self.send_started = t0
            for i in range(n):
                if stop is not None and stop.is_set():
                    return i
                due = t0 + i * period
                if realtime:
                    delay = due - clock()
                    if delay > 0:
                        sleep(delay)
                    elif delay < -0.005:
                        self.late_sends += 1
                self._send(self.sender.packet(encode(pcm[i * spf:(i + 1) * spf]),
                                              marker=(i == 0)))
        return n

    def send_audio_async(self, signal: np.ndarray, **kw) -> threading.Thread:
        t = threading.Thread(target=self.send_audio, args=(signal,), kwargs=kw, daemon=True)
        t.start()
        return t

    def send_silence(self, seconds: float, **kw) -> int:
        return self.send_audio(np.zeros(int(8000 * seconds), np.int16), **kw)

    def send_dtmf(self, digits: str, duration_ms: int = 100, gap_ms: int = 100,
                  volume: int = 10) -> None:
        """Send RFC 4733 events for ``digits``, paced in real time, with
        silence packets in the gaps so the stream timestamps stay continuous."""
        if self.dtmf_pt is None:
            raise RuntimeError("the answer did not accept telephone-event")
        from voxlab.media.dtmf import DtmfSender  # the server's own packetiser

        encode = _CODECS[self.codec][1]
        silence = encode(np.zeros(160, np.int16))
        dtmf = DtmfSender()
        sleep, clock = time.sleep, time.perf_counter
        with self._send_lock:
            self.sender.samples_per_frame = 160
            t0 = clock()
            i = 0

            def tick(payload_for_frame):
                nonlocal i
                delay = t0 + i * 0.02 - clock()
                if delay > 0:
                    sleep(delay)
                self._send(payload_for_frame())
                i += 1

            for d in digits:
                dtmf.send(d, duration_ms=duration_ms, gap_ms=0, volume=volume)
                while True:
                    ev = dtmf.next_payload()
                    if ev is None:
                        break
                    tick(lambda ev=ev: self.sender.event_packet(ev[0], ev[1], ev[2],
                                                                 self.dtmf_pt))
                for _ in range(max(1, gap_ms // 20)):
                    tick(lambda: self.sender.packet(silence))

    def close(self) -> None:
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._thread.join(timeout=1)


# --------------------------------------------------------------------------
# the user agent
# --------------------------------------------------------------------------

class Call:
    """One outgoing call (a dialog once answered)."""

    def __init__(self, ua: "SipUA", user: str, codecs, dtmf_pt: int | None,
                 headers: dict | None = None, body: bytes | None = None,
                 with_rtp: bool = True) -> None:
        self.ua = ua
        self.user = user
        self.call_id = _new_token(20) + "@voxpeer"
        self.local_tag = _new_token(8)
        self.remote_tag = ""
        self.request_uri = f"sip:{user}@{ua.host}:{ua.port}"
        if ua.transport.name == "TCP":
            self.request_uri += ";transport=tcp"
        self.remote_target = self.request_uri
        self.route_set: list[str] = []
        self.local_cseq = 1
        self.invite_branch = new_branch()
        self.invite: SipMessage | None = None
        self.provisional: list[SipMessage] = []
        self.final: SipMessage | None = None
        self.answer: SdpAudio | None = None
        self.state = "init"        # calling, early, confirmed, terminated, failed
        self.auto_ack = True
        self.ack_count = 0
        self.ok_times: list[float] = []      # perf_counter arrival of every 2xx to INVITE
        self.bye_received = threading.Event()
        self.bye_request: SipMessage | None = None
        self.requests: list[SipMessage] = []  # every request the server sent in this dialog
        self._responses: "queue.Queue[SipMessage]" = queue.Queue()
        self._ack_bytes: bytes | None = None
        self._lock = threading.Lock()
        self.rtp = RtpStream(ua.local_ip) if with_rtp else None
        self.codecs = tuple(codecs)
        self.dtmf_pt = dtmf_pt
        self.extra_headers = dict(headers or {})
        self.offer = body if body is not None else (
            sdp_offer(ua.local_ip, self.rtp.local[1], self.codecs, dtmf_pt) if self.rtp else b"")

    # -- helpers
    def _from(self) -> str:
        return f"<sip:{self.ua.user}@{self.ua.local_ip}:{self.ua.local_port}>;tag={self.local_tag}"

    def _to(self, with_tag: bool = True) -> str:
        to = f"<sip:{self.user}@{self.ua.host}:{self.ua.port}>"
        if with_tag and self.remote_tag:
            to += f";tag={self.remote_tag}"
        return to

    def _request(self, method: str, uri: str, branch: str, cseq: int,
                 to: str | None = None, body: bytes = b"",
                 extra: dict | None = None, routes: bool = True) -> SipMessage:
        hdrs = [
            ("Via", self.ua.via(branch)),
            ("Max-Forwards", "70"),
            ("From", self._from()),
            ("To", to if to is not None else self._to()),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if routes:
            hdrs += [("Route", r) for r in self.route_set]
        if method in ("INVITE",):
            hdrs.append(("Contact", self.ua.contact()))
            hdrs.append(("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"))
        for k, v in (extra or {}).items():
            hdrs.append((k, v))
        if body:
            hdrs.append(("Content-Type", "application/sdp"))
        hdrs.append(("User-Agent", "voxlab-test-peer"))
        return SipMessage(f"{method} {uri} SIP/2.0", hdrs, body)

    # -- INVITE
    def start(self) -> None:
        """Send the INVITE (returns at once; see :meth:`wait_answer`)."""
        self.invite = self._request("INVITE", self.request_uri, self.invite_branch, 1,
                                    to=self._to(False), body=self.offer,
                                    extra=self.extra_headers)
        self.state = "calling"
        self.ua._register_call(self)
        self.ua._send_request(self.invite)
        self._invite_sent = time.monotonic()
        self._retrans_at = self._invite_sent + T1
        self._retrans_interval = T1

    def _on_response(self, msg: SipMessage) -> None:
        """From the UA's receiver thread."""
        num, method = msg.cseq
        if method == "INVITE" and 200 <= msg.status < 300 and num == 1:
            self.ok_times.append(msg.received_at)
            with self._lock:
                ack = self._ack_bytes
            if ack is not None:         # retransmitted 2xx: ACK again (RFC 3261 13.2.2.4)
                self.ua._send_bytes(ack)
                self.ack_count += 1
                return
        self._responses.put(msg)

    def _next_response(self, deadline: float, method: str | None = None) -> SipMessage | None:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            # INVITE retransmission over UDP until a provisional arrives (Timer A)
            wait = deadline - now
            if (self.state == "calling" and self.ua.transport.name == "UDP"
                    and not self.provisional):
                wait = max(0.0, min(wait, self._retrans_at - now))
            try:
                msg = self._responses.get(timeout=wait)
            except queue.Empty:
                if (self.state == "calling" and self.ua.transport.name == "UDP"
                        and not self.provisional and time.monotonic() >= self._retrans_at):
                    self.ua._send_request(self.invite)
                    self._retrans_interval = min(self._retrans_interval * 2, 4.0)
                    self._retrans_at = time.monotonic() + self._retrans_interval
                continue
            if method is None or msg.cseq[1] == method:
                return msg
            self.ua.stray.append(msg)    # e.g. a late response to something else

    def wait_answer(self, timeout: float = 10.0, ack: bool | None = None) -> SipMessage:
        """Wait for the final response to the INVITE.

        2xx: ACK it (unless ``ack`` is False), configure RTP from the SDP
        answer and return it.  >= 300: ACK it and raise :class:`SipError`."""
        if ack is not None:
            self.auto_ack = ack
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next_response(deadline, "INVITE")
            if msg is None:
                self.state = "failed"
                raise SipTimeout(f"no final response within {timeout} s "
                                 f"(provisional: {[m.status for m in self.provisional]})")
            if msg.status < 200:
                self.provisional.append(msg)
                if self.state == "calling":
                    self.state = "early"
                if msg.tag("To") and not self.remote_tag and msg.status > 100:
                    pass  # early dialog; the final To tag is what counts
                continue
            self.final = msg
            if msg.status >= 300:
                self.state = "failed"
                self._ack_non2xx(msg)
                raise SipError(msg.status, msg.reason, msg, "INVITE")
            self._confirm(msg)
            return msg

    def wait_early_media(self, timeout: float = 10.0) -> SipMessage:
        """Wait for a provisional response with SDP (a 183's early media), point RTP at it
        and return it; the final response is left for :meth:`wait_answer` or :meth:`cancel`."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next_response(deadline, "INVITE")
            if msg is None:
                raise SipTimeout(f"no provisional response with SDP within {timeout} s")
            if msg.status >= 200:
                self._responses.put(msg)
                raise SipError(msg.status, f"final response before any early media: {msg.reason}", msg)
            self.provisional.append(msg)
            self.state = "early"
            sdp = parse_sdp(msg.body) if msg.body else None
            if sdp is not None and self.rtp is not None and sdp.codec is not None:
                self.rtp.configure((sdp.ip, sdp.port), sdp.codec, sdp.telephone_event_pt)
                return msg

    def _confirm(self, msg: SipMessage) -> None:
        self.remote_tag = msg.tag("To")
        contact = msg.get_all("Contact")
        if contact:
            self.remote_target = _uri_of(contact[0])
        self.route_set = list(reversed(msg.get_all("Record-Route")))
        self.answer = parse_sdp(msg.body) if msg.body else None
        if self.rtp is not None and self.answer is not None:
            codec = self.answer.codec
            if codec is None:
                raise SipError(488, f"answer has no G.711 codec: {self.answer}", msg)
            if codec not in self.codecs:
                raise SipError(488, f"answer picked {codec}, not offered", msg)
            dtmf_pt = self.answer.telephone_event_pt
            self.rtp.configure((self.answer.ip, self.answer.port), codec, dtmf_pt)
        self.state = "confirmed"
        if self.auto_ack:
            self.send_ack()

    def send_ack(self, body: bytes = b"", cseq: int = 1) -> None:
        """ACK a 2xx (a new transaction, to the remote target); ``body`` is the
        SDP answer when the 2xx carried the offer, ``cseq`` that of the INVITE
        (a re-INVITE's ACK repeats its number)."""
        ack = self._request("ACK", self.remote_target, new_branch(), cseq, body=body)
        data = ack.to_bytes()
        if cseq == 1:
            with self._lock:
                self._ack_bytes = data      # what a retransmitted first 2xx gets again
        self.ua._send_bytes(data)
        self.ack_count += 1

    def _ack_non2xx(self, resp: SipMessage) -> None:
        """ACK for a non-2xx final response: same branch as the INVITE, To
        from the response (RFC 3261 17.1.1.3)."""
        ack = self._request("ACK", self.request_uri, self.invite_branch, 1,
                            to=resp["To"], routes=False)
        self.ua._send_request(ack)

    # -- CANCEL
    def cancel(self, timeout: float = 10.0, wait_provisional: float = 5.0) -> SipMessage:
        """CANCEL the pending INVITE.  Waits for a provisional first (a CANCEL
        must not precede it), then for the 200 to the CANCEL and the INVITE's
        final response (normally 487), which is ACKed and returned."""
        deadline = time.monotonic() + wait_provisional
        while not self.provisional and self.final is None:
            msg = self._next_response(deadline, "INVITE")
            if msg is None:
                break
            if msg.status < 200:
                self.provisional.append(msg)
                self.state = "early"
            else:
                self._responses.put(msg)
                break
        cancel = SipMessage(f"CANCEL {self.request_uri} SIP/2.0", [
            ("Via", self.ua.via(self.invite_branch)),
            ("Max-Forwards", "70"),
            ("From", self._from()),
            ("To", self._to(False)),
            ("Call-ID", self.call_id),
            ("CSeq", "1 CANCEL"),
            ("User-Agent", "voxlab-test-peer"),
        ])
        self.ua._send_request(cancel)
        self.cancel_response: SipMessage | None = None
        deadline = time.monotonic() + timeout
        final = None
        resend_at = time.monotonic() + T1
        while self.cancel_response is None or final is None:
            wait_until = min(deadline, resend_at) if (self.cancel_response is None and
                                                     self.ua.transport.name == "UDP") else deadline
            msg = self._next_response(wait_until)
            if msg is None:
                if time.monotonic() >= deadline:
                    raise SipTimeout(f"CANCEL: 200={self.cancel_response} final={final}",
                                     "CANCEL")
                self.ua._send_request(cancel)
                resend_at = time.monotonic() + 2 * T1
                continue
            if msg.cseq[1] == "CANCEL":
                self.cancel_response = msg
            elif msg.status >= 200:
                final = msg
                self.final = msg
                if msg.status >= 300:
                    self._ack_non2xx(msg)
                    self.state = "failed"
                else:               # answered before the CANCEL landed
                    self._confirm(msg)
        return final

    # -- in-dialog requests
    def request(self, method: str, body: bytes = b"", timeout: float = 10.0,
                extra: dict | None = None) -> SipMessage:
        """Send an in-dialog request and return its final response."""
        self.local_cseq += 1
        branch = new_branch()
        req = self._request(method, self.remote_target, branch, self.local_cseq, body=body,
                            extra=extra)
        self.ua._send_request(req)
        deadline = time.monotonic() + timeout
        interval = T1
        resend = time.monotonic() + interval
        while True:
            now = time.monotonic()
            try:
                wait = min(deadline, resend) - now
                msg = self._responses.get(timeout=max(0.0, wait))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise SipTimeout(f"no final response to {method} within {timeout} s",
                                     method)
                if self.ua.transport.name == "UDP":
                    self.ua._send_request(req)
                    interval = min(interval * 2, 4.0)
                resend = time.monotonic() + interval
                continue
            if msg.cseq != (self.local_cseq, method):
                continue             # stray (a late INVITE response, ...)
            if msg.status < 200:
                continue
            if msg.status >= 300:
                raise SipError(msg.status, msg.reason, msg, method)
            return msg

    def bye(self, timeout: float = 10.0) -> SipMessage | None:
        """Hang up from our side (no-op if the server already sent BYE)."""
        if self.bye_received.is_set() or self.state != "confirmed":
            return None
        self.state = "terminating"
        try:
            return self.request("BYE", timeout=timeout)
        finally:
            self.state = "terminated"
            self.close_media()

    def wait_bye(self, timeout: float = 10.0) -> bool:
        """Wait for the server's BYE (answered 200 by the receiver thread)."""
        return self.bye_received.wait(timeout)

    def _on_request(self, req: SipMessage) -> SipMessage | None:
        """In-dialog request from the server; returns the response to send."""
        self.requests.append(req)
        m = req.method
        if m == "BYE":
            self.bye_request = req
            self.state = "terminated"
            self.bye_received.set()
            return self.ua.response_to(req, 200, "OK")
        if m == "ACK":
            return None
        if m in ("OPTIONS", "INFO", "NOTIFY", "UPDATE"):
            return self.ua.response_to(req, 200, "OK")
        if m == "INVITE":  # re-INVITE: keep the media as it is; answer hold as RFC 3264 asks
            offered = req.body.decode("ascii", "replace")
            direction = next((mine for theirs, mine in (("a=sendonly", "recvonly"),
                                                        ("a=recvonly", "sendonly"),
                                                        ("a=inactive", "inactive"))
                              if theirs in offered), "sendrecv")
            body = (sdp_offer(self.ua.local_ip, self.rtp.local[1], (self.rtp.codec,),
                              self.rtp.dtmf_pt, direction=direction) if self.rtp else b"")
            return self.ua.response_to(req, 200, "OK", body=body, contact=True)
        return self.ua.response_to(req, 501, "Not Implemented")

    def close_media(self) -> None:
        if self.rtp is not None:
            self.rtp.close()

    def __repr__(self) -> str:
        return f"<Call {self.user} {self.state} {self.call_id}>"


class SipUA:
    """A small SIP user agent client bound to one server address.

    ``transport`` is "udp" or "tcp" (TCP: one connection, reused for the
    requests the server sends back)."""

    def __init__(self, host: str, port: int, transport: str = "udp",
                 local_ip: str = "127.0.0.1", user: str = "voxpeer") -> None:
        self.host = host
        self.port = port
        self.local_ip = local_ip
        self.user = user
        t = transport.lower()
        if t == "udp":
            self.transport: _Transport = _UdpTransport(local_ip, (host, port))
        elif t == "tcp":
            self.transport = _TcpTransport(local_ip, (host, port))
        else:
            raise ValueError(f"unknown transport {transport!r}")
        self.local_port = self.transport.local[1]
        self.calls: dict[str, Call] = {}
        self.stray: list[SipMessage] = []          # messages no call/transaction claimed
        self.sent: list[bytes] = []
        self._tx: dict[tuple[str, str], "queue.Queue[SipMessage]"] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive_loop, daemon=True,
                                        name=f"sip-rx-{self.local_port}")
        self._thread.start()

    # -- headers
    def via(self, branch: str) -> str:
        return f"SIP/2.0/{self.transport.name} {self.local_ip}:{self.local_port};branch={branch};rport"

    def contact(self) -> str:
        tp = ";transport=tcp" if self.transport.name == "TCP" else ""
        return f"<sip:{self.user}@{self.local_ip}:{self.local_port}{tp}>"

    # -- sending
    def _send_bytes(self, data: bytes, addr: tuple | None = None) -> None:
        self.sent.append(data)
        self.transport.send(data, addr)

    def _send_request(self, msg: SipMessage) -> None:
        self._send_bytes(msg.to_bytes())

    def send_raw(self, data: bytes) -> None:
        """Send arbitrary bytes to the server over this UA's transport."""
        self._send_bytes(data)

    def response_to(self, req: SipMessage, status: int, reason: str, body: bytes = b"",
                    contact: bool = False) -> SipMessage:
        hdrs = [("Via", v) for v in req.get_all("Via")]
        for name in ("From", "To", "Call-ID", "CSeq"):
            v = req.get(name)
            if v is not None:
                hdrs.append((name, v))
        if contact:
            hdrs.append(("Contact", self.contact()))
        if body:
            hdrs.append(("Content-Type", "application/sdp"))
        return SipMessage(f"SIP/2.0 {status} {reason}", hdrs, body)

    # -- receiving
    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            try:
                got = self.transport.recv(0.1)
            except OSError:
                if self._stop.is_set():
                    break
                time.sleep(0.05)
                continue
            if got is None:
                continue
            data, addr = got
            if not data.strip():
                continue                  # keep-alive
            try:
                msg = SipMessage.parse(data)
                msg.source = addr
                msg.received_at = time.perf_counter()
                self._dispatch(msg, addr)
            except Exception as exc:      # never let the receiver die
                self.stray.append(SipMessage(f"UNPARSEABLE {exc!r}", [], data))

    def _dispatch(self, msg: SipMessage, addr: tuple) -> None:
        if msg.is_response:
            try:
                key = (msg.branch, msg.cseq[1])
            except (KeyError, ValueError):
                self.stray.append(msg)
                return
            with self._lock:
                q = self._tx.get(key)
                call = self.calls.get(msg.get("Call-ID", "").strip())
            if q is not None:
                q.put(msg)
            elif call is not None:
                call._on_response(msg)
            else:
                self.stray.append(msg)
            return
        with self._lock:
            call = self.calls.get(msg.get("Call-ID", "").strip())
        if call is not None:
            resp = call._on_request(msg)
        elif msg.method == "OPTIONS":
            resp = self.response_to(msg, 200, "OK")
        elif msg.method == "ACK":
            resp = None
        else:
            self.stray.append(msg)
            resp = self.response_to(msg, 481, "Call/Transaction Does Not Exist")
        if resp is not None:
            # responses go back where the request came from (UDP) or down the connection
            self._send_bytes(resp.to_bytes(), addr if self.transport.name == "UDP" else None)

    def _register_call(self, call: Call) -> None:
        with self._lock:
            self.calls[call.call_id] = call

    # -- API
    def call(self, user: str, codecs=("PCMU", "PCMA"), dtmf_pt: int | None = 101,
             timeout: float = 10.0, ack: bool = True, headers: dict | None = None,
             body: bytes | None = None, with_rtp: bool = True) -> Call:
        """INVITE ``user`` and wait for the answer (ACKed unless ``ack`` is
        False).  Raises :class:`SipError` on a final response >= 300."""
        call = self.start_call(user, codecs, dtmf_pt, headers=headers, body=body,
                               with_rtp=with_rtp)
        try:
            call.wait_answer(timeout, ack=ack)
        except BaseException:
            call.close_media()
            raise
        return call

    def start_call(self, user: str, codecs=("PCMU", "PCMA"), dtmf_pt: int | None = 101,
                   headers: dict | None = None, body: bytes | None = None,
                   with_rtp: bool = True) -> Call:
        """Send the INVITE and return at once (for CANCEL tests)."""
        call = Call(self, user, codecs, dtmf_pt, headers, body, with_rtp)
        call.start()
        return call

    def options(self, user: str = "ping", timeout: float = 5.0) -> SipMessage:
        """Out-of-dialog OPTIONS; returns the final response (any status)."""
        branch = new_branch()
        q: "queue.Queue[SipMessage]" = queue.Queue()
        with self._lock:
            self._tx[(branch, "OPTIONS")] = q
        call_id = _new_token(20) + "@voxpeer"
        uri = f"sip:{user}@{self.host}:{self.port}"
        req = SipMessage(f"OPTIONS {uri} SIP/2.0", [
            ("Via", self.via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{self.user}@{self.local_ip}:{self.local_port}>;tag={_new_token(8)}"),
            ("To", f"<{uri}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 OPTIONS"),
            ("Accept", "application/sdp"),
            ("User-Agent", "voxlab-test-peer"),
        ])
        try:
            self._send_request(req)
            deadline = time.monotonic() + timeout
            interval = T1
            while True:
                wait = min(interval, deadline - time.monotonic())
                if wait <= 0:
                    raise SipTimeout(f"no response to OPTIONS within {timeout} s", "OPTIONS")
                try:
                    msg = q.get(timeout=wait)
                except queue.Empty:
                    if self.transport.name == "UDP":
                        self._send_request(req)
                    interval = min(interval * 2, 4.0)
                    continue
                if msg.status >= 200:
                    return msg
        finally:
            with self._lock:
                self._tx.pop((branch, "OPTIONS"), None)

    def close(self) -> None:
        for call in list(self.calls.values()):
            call.close_media()
        self._stop.set()
        try:
            self.transport.close()
        except OSError:
            pass
        self._thread.join(timeout=1)

    def __enter__(self) -> "SipUA":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

