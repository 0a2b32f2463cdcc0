#!/usr/bin/env python3
"""tests/lib/hostile_peer.py — a BitTorrent peer that speaks the protocol badly on purpose (plain sockets).

  hostile_peer.py TORRENT MODE (--listen PORT | --connect HOST:PORT) [options]

Modes (MODE):
  corrupt     serve: handshake, bitfield with every piece, unchoke, and answer every REQUEST with wrong bytes
              (the right length, the wrong content). Runs until --duration ends or it is killed.
  hugelen     after the handshake send a 4 GiB length prefix (0xffffffff) and a trickle of payload.
  badreq      after the handshake + INTERESTED (and UNCHOKE from the victim if it comes), one connection per
              case: a request for a piece past the torrent, one running past the end of its piece, one longer
              than 128 KiB, one of length 0.
  badbitfield a BITFIELD three bytes longer than the torrent's piece count needs.
  flood       HAVE + REQUEST messages as fast as the socket takes them (thousands per second), never reading.
  slowloris   --conns connections that each send the handshake one byte per second (never finishing it in
              time); with --silent they send nothing at all.
For every attacking connection it reports when the victim closed it. Output: one JSON object per line on stdout
({"event": ..., ...}); the last line is {"event": "summary", ...}.

Exit status for the attack modes (--connect): 0 when the victim dropped every attacking connection within
--expect-drop seconds (default 40), 1 when a connection was still open then, 2 on a setup error (cannot
connect, bad torrent). In serve mode (corrupt) 0 unless a setup error.
"""
import argparse
import hashlib
import json
import os
import select
import socket
import struct
import sys
import time

PSTR = b"\x13BitTorrent protocol"


def bdecode(data, i=0):
    c = data[i:i + 1]
    if c == b"i":
        j = data.index(b"e", i)
        return int(data[i + 1:j]), j + 1
    if c == b"l":
        i += 1
        out = []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        start = i
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            if k == b"info":
                start = i
            v, i = bdecode(data, i)
            if k == b"info":
                out[b"__info_raw"] = data[start:i]
            out[k] = v
        return out, i + 1
    j = data.index(b":", i)
    n = int(data[i:j])
    return data[j + 1:j + 1 + n], j + 1 + n


class Torrent:
    def __init__(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        d, _ = bdecode(raw)
        info = d[b"info"]
        self.info_hash = hashlib.sha1(d[b"__info_raw"]).digest()
        self.piece_length = info[b"piece length"]
        if b"files" in info:
            self.total = sum(f[b"length"] for f in info[b"files"])
        else:
            self.total = info[b"length"]
        self.num_pieces = len(info[b"pieces"]) // 20

    def piece_size(self, i):
        return min(self.piece_length, self.total - i * self.piece_length)


def emit(**kw):
    kw.setdefault("t", round(time.monotonic() - T0, 3))
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def msg(mid, payload=b""):
    return struct.pack(">IB", 1 + len(payload), mid) + payload


def handshake(tor, peer_id, fast=True):
    reserved = bytearray(8)
    if fast:
        reserved[7] |= 0x04
    return PSTR + bytes(reserved) + tor.info_hash + peer_id


def new_peer_id(tag):
    return (b"-XX0001-" + tag.encode() + os.urandom(12))[:20]


SOURCE = None  # --source: local address to connect from (one attacking host distinct from honest peers)


def connect(addr, timeout=10):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout,
                                 source_address=(SOURCE, 0) if SOURCE else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n, deadline):
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        s.settimeout(left)
        c = s.recv(n - len(buf))
        if not c:
            raise ConnectionError("closed")
        buf += c
    return buf


def read_messages(s, deadline, want=None):
    """Read and parse messages until one with id in want arrives (returned) or the deadline passes (None)."""
    while True:
        try:
            hdr = recv_exact(s, 4, deadline)
        except TimeoutError:
            return None
        (n,) = struct.unpack(">I", hdr)
        if n == 0:
            continue
        body = recv_exact(s, n, deadline)
        if want is not None and body[0] in want:
            return body


def wait_closed(s, limit):
    """Wait until the victim closes the connection (reading and discarding). True if it did within limit."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            c = s.recv(65536)
            if not c:
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError, OSError):
            return True
    return False


def open_session(tor, addr, tag, fast=True):
    """Connect, exchange handshakes; returns the socket (the victim's handshake consumed)."""
    s = connect(addr)
    s.sendall(handshake(tor, new_peer_id(tag), fast))
    hs = recv_exact(s, 68, time.monotonic() + 10)
    if hs[:20] != PSTR or hs[28:48] != tor.info_hash:
        raise RuntimeError("victim sent a bad handshake")
    return s


# ---------------------------------------------------------------------------------------------------- attacks
def attack_one(name, tor, addr, limit, body):
    """Run body(sock) on a fresh session and wait for the victim to drop it."""
    t = time.monotonic()
    try:
        s = open_session(tor, addr, name[:4])
    except Exception as e:  # noqa: BLE001
        emit(event="error", case=name, error="handshake: %s" % e)
        return None
    try:
        body(s)
    except (BrokenPipeError, ConnectionResetError):
        emit(event="dropped", case=name, after_s=round(time.monotonic() - t, 2), during="send")
        s.close()
        return True
    dropped = wait_closed(s, limit)
    emit(event="dropped" if dropped else "not_dropped", case=name, after_s=round(time.monotonic() - t, 2))
    s.close()
    return dropped


def mode_hugelen(tor, a):
    def body(s):
        s.sendall(b"\xff\xff\xff\xff\x07")
        for _ in range(20):  # a trickle of "payload": the victim must not wait for 4 GiB
            time.sleep(0.05)
            s.sendall(b"\0" * 1024)
    return [attack_one("hugelen", tor, a.connect, a.expect_drop, body)]


def mode_badreq(tor, a):
    n, pl = tor.num_pieces, tor.piece_length
    last = n - 1
    cases = [
        ("req_past_torrent", struct.pack(">III", n, 0, 16384)),
        ("req_far_past_torrent", struct.pack(">III", 0xFFFFFFFF, 0, 16384)),
        ("req_past_piece", struct.pack(">III", last, max(0, tor.piece_size(last) - 100), 16384)),
        ("req_begin_overflow", struct.pack(">III", 0, 0xFFFFC000, 0x8000)),
        ("req_too_long", struct.pack(">III", 0, 0, min(pl, 1 << 20) if pl > 131072 else 131072 + 16384)),
        ("req_zero_len", struct.pack(">III", 0, 0, 0)),
    ]
    res = []
    for name, payload in cases:
        def body(s, payload=payload):
            s.sendall(msg(2))  # interested
            read_messages(s, time.monotonic() + 5, want={1})  # unchoke (if it comes)
            s.sendall(msg(6, payload))
        res.append(attack_one(name, tor, a.connect, a.expect_drop, body))
    return res


def mode_badbitfield(tor, a):
    nbytes = (tor.num_pieces + 7) // 8

    def body(s):
        s.sendall(msg(5, b"\xff" * (nbytes + 3)))
    res = [attack_one("bitfield_long", tor, a.connect, a.expect_drop, body)]
    if nbytes > 1:
        def body2(s):
            s.sendall(msg(5, b"\xff" * (nbytes - 1)))
        res.append(attack_one("bitfield_short", tor, a.connect, a.expect_drop, body2))
    return res


def mode_flood(tor, a):
    stats = {"have": 0, "request": 0}

    def body(s):
        s.setblocking(False)
        s.sendall  # noqa: B018
        end = time.monotonic() + a.flood_time
        n = tor.num_pieces
        i = 0
        batch = b""
        for k in range(256):
            batch += msg(4, struct.pack(">I", k % n))
        pending = msg(2)
        while time.monotonic() < end:
            reqs = b"".join(msg(6, struct.pack(">III", (i + k) % n, 0, min(16384, tor.piece_size((i + k) % n))))
                            for k in range(256))
            i += 256
            pending += batch + reqs
            stats["have"] += 256
            stats["request"] += 256
            while pending and time.monotonic() < end:
                _, w, _ = select.select([], [s], [], 0.2)
                if not w:
                    continue
                try:
                    sent = s.send(pending)
                except BlockingIOError:
                    continue
                pending = pending[sent:]
                if len(pending) < 65536:
                    break
        s.setblocking(True)
    r = attack_one("flood", tor, a.connect, a.expect_drop, body)
    emit(event="flood_sent", **stats)
    return [r]


def mode_slowloris(tor, a):
    hs = handshake(tor, new_peer_id("slow"))
    socks = []
    t0 = time.monotonic()
    for k in range(a.conns):
        try:
            socks.append(connect(a.connect))
        except OSError as e:
            emit(event="connect_failed", conn=k, error=str(e))
    emit(event="connected", conns=len(socks))
    open_ = {id(s): s for s in socks}
    dropped_at = {}
    pos = 0
    deadline = t0 + a.expect_drop
    while open_ and time.monotonic() < deadline:
        if not a.silent and pos < len(hs) - 1:  # never the last byte: the handshake is never finished
            for s in list(open_.values()):
                try:
                    s.send(hs[pos:pos + 1])
                except OSError:
                    dropped_at[id(s)] = time.monotonic() - t0
                    del open_[id(s)]
            pos += 1
        r, _, _ = select.select(list(open_.values()), [], [], 1.0)
        for s in r:
            try:
                c = s.recv(4096)
            except OSError:
                c = b""
            if not c:
                dropped_at[id(s)] = time.monotonic() - t0
                del open_[id(s)]
    for s in socks:
        s.close()
    times = sorted(dropped_at.values())
    emit(event="slowloris_done", conns=len(socks), dropped=len(dropped_at), still_open=len(open_),
         first_drop_s=round(times[0], 2) if times else None, last_drop_s=round(times[-1], 2) if times else None)
    return [len(open_) == 0 and len(socks) > 0]


# ---------------------------------------------------------------------------------------------------- serve
def mode_corrupt_serve(tor, a):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(16)
    emit(event="listening", port=a.listen)
    end = time.monotonic() + a.duration
    conns = {}  # fd -> dict(sock, inbuf, state, t)
    served = 0
    nconn = 0
    nbytes = (tor.num_pieces + 7) // 8
    bits = bytearray(b"\xff" * nbytes)
    spare = nbytes * 8 - tor.num_pieces
    if spare:
        bits[-1] = (0xFF << spare) & 0xFF
    junk = bytes((i * 7 + 1) & 0xFF for i in range(131072))
    while time.monotonic() < end:
        rl = [ls] + [c["sock"] for c in conns.values()]
        r, _, _ = select.select(rl, [], [], 0.5)
        for s in r:
            if s is ls:
                cs, addr = ls.accept()
                cs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                nconn += 1
                conns[cs.fileno()] = {"sock": cs, "in": b"", "hs": False, "t": time.monotonic(), "n": nconn,
                                       "served": 0}
                emit(event="accepted", conn=nconn, addr="%s:%d" % addr)
                continue
            c = conns[s.fileno()]
            try:
                data = s.recv(262144)
            except OSError:
                data = b""
            if not data:
                emit(event="dropped", conn=c["n"], after_s=round(time.monotonic() - c["t"], 2),
                     blocks_served=c["served"])
                del conns[s.fileno()]
                s.close()
                continue
            c["in"] += data
            out = b""
            if not c["hs"]:
                if len(c["in"]) < 68:
                    continue
                if c["in"][28:48] != tor.info_hash:
                    emit(event="wrong_info_hash", conn=c["n"])
                c["in"] = c["in"][68:]
                c["hs"] = True
                # no fast extension: plain BEP 3, so every request gets an answer
                out += handshake(tor, new_peer_id("crpt"), fast=False)
                out += msg(5, bytes(bits)) + msg(1)
            buf = c["in"]
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) < 4 + n:
                    break
                body, buf = buf[4:4 + n], buf[4 + n:]
                if n and body[0] == 6 and n == 13:
                    idx, begin, length = struct.unpack(">III", body[1:])
                    length = min(length, len(junk))
                    out += struct.pack(">IBII", 9 + length, 7, idx, begin) + junk[:length]
                    served += 1
                    c["served"] += 1
                elif n and body[0] == 2:
                    out += msg(1)
            c["in"] = buf
            if out:
                try:
                    s.sendall(out)
                except OSError:
                    pass
    emit(event="summary", mode="corrupt", connections=nconn, blocks_served=served, still_open=len(conns))
    return 0


def main():
    global T0
    T0 = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("torrent")
    ap.add_argument("mode", choices=["corrupt", "hugelen", "badreq", "badbitfield", "flood", "slowloris"])
    ap.add_argument("--listen", type=int, help="serve on 127.0.0.1:PORT (corrupt)")
    ap.add_argument("--connect", help="attack the peer at HOST:PORT")
    ap.add_argument("--duration", type=float, default=120, help="serve mode: run this long (s)")
    ap.add_argument("--expect-drop", type=float, default=40, help="seconds the victim has to drop us")
    ap.add_argument("--flood-time", type=float, default=5, help="flood: seconds of flooding")
    ap.add_argument("--conns", type=int, default=8, help="slowloris: connections")
    ap.add_argument("--silent", action="store_true", help="slowloris: send nothing at all")
    ap.add_argument("--source", help="connect from this local address (e.g. 127.0.0.66)")
    a = ap.parse_args()
    global SOURCE
    SOURCE = a.source
    try:
        tor = Torrent(a.torrent)
    except Exception as e:  # noqa: BLE001
        emit(event="error", error="torrent: %s" % e)
        return 2
    if a.mode == "corrupt":
        if a.listen is None:
            ap.error("corrupt needs --listen")
        return mode_corrupt_serve(tor, a)
    if not a.connect:
        ap.error("%s needs --connect" % a.mode)
    fn = {"hugelen": mode_hugelen, "badreq": mode_badreq, "badbitfield": mode_badbitfield, "flood": mode_flood,
          "slowloris": mode_slowloris}[a.mode]
    res = fn(tor, a)
    ok = all(r is True for r in res) and res
    emit(event="summary", mode=a.mode, cases=len(res), dropped=sum(1 for r in res if r is True),
         errors=sum(1 for r in res if r is None))
    if any(r is None for r in res):
        return 2
    return 0 if ok else 1


T0 = 0.0
if __name__ == "__main__":
    sys.exit(main())
