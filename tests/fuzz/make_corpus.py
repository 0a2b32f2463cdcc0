#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py — (re)generate the small seed corpora in tests/fuzz/corpus/<target>/.

Deterministic: running it twice gives the same files. Each seed is a well-formed input for the target's
input format (see the header comment of each fuzz_*.c), so the fuzzer starts from the interesting paths
instead of having to discover the framing first.  Usage: python3 tests/fuzz/make_corpus.py
"""
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(benc(k) + benc(x) for k, x in items) + b"e"
    raise TypeError(v)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pieces_for(total, plen):
    n = (total + plen - 1) // plen
    return b"".join(hashlib.sha1(b"\0" * min(plen, total - i * plen)).digest() for i in range(n))


def ezio(name, extents, plen, extra=None):
    files = [{"length": ln, "path": ["%032x" % off]} for off, ln in extents]
    total = sum(ln for _, ln in extents)
    info = {"name": name, "piece length": plen, "pieces": pieces_for(total, plen), "files": files}
    d = {"info": info, "created by": "make_corpus", "creation date": 1700000000}
    if extra:
        d.update(extra)
    return benc(d)


# ---------------------------------------------------------------- bencode
def bencode_seeds():
    write("fuzz_bencode", "int", b"i-42e")
    write("fuzz_bencode", "str", b"4:spam")
    write("fuzz_bencode", "empty_str", b"0:")
    write("fuzz_bencode", "list", benc([1, "two", [3], {"k": "v"}]))
    write("fuzz_bencode", "dict", benc({"a": 1, "b": [b"\x00\xff", -9223372036854775808], "c": {}}))
    write("fuzz_bencode", "nested", b"l" * 30 + b"e" * 30)
    write("fuzz_bencode", "torrent", ezio("sda1", [(0, 4096), (1 << 20, 8192)], 4096))
    write("fuzz_bencode", "bad_order", b"d1:bi1e1:ai2ee")


# ---------------------------------------------------------------- metainfo
def metainfo_seeds():
    write("fuzz_metainfo", "ezio", ezio("sda1", [(0, 4096), (1 << 20, 8192), (0x10000, 100)], 4096,
                                        {"announce": "http://127.0.0.1:6969/announce",
                                         "announce-list": [["http://127.0.0.1:6969/announce"],
                                                           ["udp://127.0.0.1:6969"]]}))
    info = {"name": "disk.img", "piece length": 16384, "length": 40000, "pieces": pieces_for(40000, 16384),
            "private": 1}
    write("fuzz_metainfo", "single", benc({"info": info, "comment": "single file"}))
    files = [{"length": 1000, "path": ["00000000000000000000000000001000"]},
             {"length": 24, "path": [".pad", "24"], "attr": "p"},
             {"length": 3000, "path": ["0000000000000000000000000000a000"]}]
    info = {"name": "sdb", "piece length": 1024, "pieces": pieces_for(4024, 1024), "files": files}
    write("fuzz_metainfo", "pad", benc({"info": info}))
    # overlapping extents, and an extent running past 2^64 (both must be refused by the extent map)
    write("fuzz_metainfo", "overlap", ezio("sda", [(0, 8192), (4096, 8192)], 4096))
    write("fuzz_metainfo", "wrap", ezio("sda", [(0xffffffffffff0000, 0x20000)], 65536))
    files = [{"length": 10, "path": ["..", "etc", "passwd"]}]
    info = {"name": "x", "piece length": 16, "pieces": pieces_for(10, 16), "files": files}
    write("fuzz_metainfo", "dotdot", benc({"info": info}))


# ---------------------------------------------------------------- tracker
def rec(kind, payload):
    return bytes([kind]) + struct.pack(">H", len(payload)) + payload


def pct(b):
    return "".join("%%%02x" % c for c in b)


IH1 = b"A" * 20


def tracker_seeds():
    q = ("info_hash=%s&peer_id=-DS0100-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=1000"
         "&event=started&compact=1&numwant=10" % pct(IH1)).encode()
    q2 = ("info_hash=%s&peer_id=%s&port=6882&uploaded=5&downloaded=7&left=0&event=completed&compact=0"
          "&ds_name=pc-07&ds_rate=1000&ds_up=5&ds_npieces=3&ds_pieces=e0&ip=10.1.2.3" %
          (pct(IH1), pct(b"\x01" * 20))).encode()
    write("fuzz_tracker_request", "http_announce", b"\x00" + rec(0, q) + rec(0, q2) + rec(6, b""))
    write("fuzz_tracker_request", "parse_announce", b"\x01" + rec(2, q) + rec(7, b"\x05") + rec(2, q2))
    write("fuzz_tracker_request", "scrape", b"\x00" + rec(0, q) + rec(1, ("info_hash=%s" % pct(IH1)).encode())
          + rec(1, b""))
    tid = b"\x00\x00\x30\x39"
    connect = struct.pack(">QI", 0x41727101980, 0) + tid
    announce = (b"\0" * 8 + struct.pack(">I", 1) + tid + IH1 + b"-DS0100-udpudpudpudp" +
                struct.pack(">QQQIIIiH", 0, 1000, 0, 2, 0, 0, -1, 6881))
    scrape = b"\0" * 8 + struct.pack(">I", 2) + tid + IH1
    write("fuzz_tracker_request", "udp", b"\x02" + rec(3, connect) + rec(4, announce) + rec(4 | 0x80, scrape)
          + rec(3, announce) + rec(6, b""))
    write("fuzz_tracker_request", "misc", b"\x00" + rec(5, b"%41%zz") + rec(5, b"::1") + rec(5, b"10.0.0.1")
          + rec(7, b"\x02") + rec(0, q))


# ---------------------------------------------------------------- session
def msg(mid, payload=b""):
    return struct.pack(">IB", 1 + len(payload), mid) + payload


def chunk(data, ctl=0):
    out = b""
    while True:
        part, data = data[:255], data[255:]
        out += bytes([ctl, len(part)]) + part
        if not data:
            return out
        ctl &= ~1


def session_seeds():
    # mode: bit0 seeder, bit1 handshake prefix, bit2 fast, bit3 ext, bit4 outgoing, bits5-6 block size, bit7 v6
    ext_hs = msg(20, b"\x00" + benc({"m": {"ut_pex": 1}, "p": 6881, "v": "hostile", "ds_maxreq": 131072}))
    npieces = 9
    # fetcher, fast+ext: have-all, unchoke, then zero-filled blocks for piece 0 (which is all zeros: verifies)
    blocks = b"".join(msg(7, struct.pack(">II", 0, b) + b"\0" * 32) for b in range(0, 128, 32))
    write("fuzz_session", "fetch_haveall", bytes([0x02 | 0x04 | 0x08 | (1 << 5)]) +
          chunk(msg(14) + ext_hs) + chunk(msg(1), 1) + chunk(blocks) + chunk(b"", 0x40 | 1))
    # fetcher, plain: bitfield with all bits, unchoke, corrupt blocks
    bf = bytes([0xff, 0x80])
    bad = b"".join(msg(7, struct.pack(">II", p, 0) + b"\x55" * 32) for p in range(npieces))
    write("fuzz_session", "fetch_corrupt", bytes([0x02 | (1 << 5)]) + chunk(msg(5, bf) + msg(1)) + chunk(bad)
          + chunk(b"", 0xfd))
    # seeder: interested, requests (in range, past the piece, past the torrent), cancel, flood of HAVEs
    reqs = (msg(2) + msg(6, struct.pack(">III", 0, 0, 64)) + msg(6, struct.pack(">III", 8, 100, 64)) +
            msg(8, struct.pack(">III", 0, 0, 64)) + msg(6, struct.pack(">III", 99, 0, 16)))
    write("fuzz_session", "seed_requests", bytes([0x01 | 0x02 | 0x04]) + chunk(msg(15) + reqs, 1) +
          chunk(b"".join(msg(4, struct.pack(">I", i % npieces)) for i in range(40)), 1))
    # wrong-size bitfield, 4 GiB length prefix, a bad handshake
    write("fuzz_session", "bad_bitfield", bytes([0x02]) + chunk(msg(5, b"\xff" * 5)))
    write("fuzz_session", "huge_len", bytes([0x02 | 0x04]) + chunk(b"\xff\xff\xff\xff\x07"))
    write("fuzz_session", "raw_handshake", bytes([0x10]) + chunk(b"\x13BitTorrent protocol" + b"\0" * 48))
    # two peers: A has everything and serves garbage, B has-all via fast and gets choked / rejects
    write("fuzz_session", "two_peers", bytes([0x02 | 0x04 | 0x08]) + chunk(msg(14) + msg(1)) +
          chunk(msg(14) + msg(1), 2) + chunk(bad[:300], 0x04) + chunk(msg(16, struct.pack(">III", 1, 0, 16)), 2 | 1)
          + chunk(b"", 0x7d) + chunk(b"", 0x7f))


def zstd_frame(raw):
    # the zstd command line records the content size, like the product's frames
    import subprocess
    return subprocess.run(["zstd", "-q", "-c", "-1"], input=raw, capture_output=True, check=True).stdout


def zpiece_seeds():
    # ds_zpiece (zpiece.h): our ext id for it is 3; payload type, u32 piece, [u32 raw_len, frame]
    ext_hs = msg(20, b"\x00" + benc({"m": {"ut_pex": 1, "ds_zpiece": 9}, "p": 6881, "ds_maxreq": 131072}))
    zero = zstd_frame(b"\0" * 128)
    data0 = msg(20, b"\x03" + struct.pack(">BII", 1, 0, 128) + zero)
    bomb = zstd_frame(b"\0" * 65536)
    # fetcher: have-all, unchoke, the frame of piece 0 (all zeros: verifies), then a bomb, wrong sizes, junk
    write("fuzz_session", "zpiece_fetch", bytes([0x02 | 0x04 | 0x08]) + chunk(ext_hs + msg(14)) +
          chunk(msg(1), 1) + chunk(data0) +
          chunk(msg(20, b"\x03" + struct.pack(">BII", 1, 3, 128) + bomb)) +
          chunk(msg(20, b"\x03" + struct.pack(">BII", 1, 6, 127) + zero)) +
          chunk(msg(20, b"\x03" + struct.pack(">BI", 2, 1)) + msg(20, b"\x03" + struct.pack(">BI", 3, 2)), 1))
    # seeder: interested, compressed requests, a cancel, a request beyond the torrent
    reqs = (msg(2) + b"".join(msg(20, b"\x03" + struct.pack(">BI", 0, i)) for i in range(9)) +
            msg(20, b"\x03" + struct.pack(">BI", 4, 2)) + msg(20, b"\x03" + struct.pack(">BI", 0, 99)))
    write("fuzz_session", "zpiece_seed", bytes([0x01 | 0x02 | 0x04 | 0x08]) + chunk(ext_hs + msg(15)) +
          chunk(reqs, 1) + chunk(b"", 0x41))
    # fuzz_zpiece: 2 bytes of expected size, then one payload
    write("fuzz_zpiece", "data_ok", struct.pack(">H", 127) + struct.pack(">BII", 1, 0, 128) + zero)
    write("fuzz_zpiece", "bomb", struct.pack(">H", 1023) + struct.pack(">BII", 1, 0, 1024) + bomb)
    write("fuzz_zpiece", "text", struct.pack(">H", 4095) + struct.pack(">BII", 1, 5, 4096) +
          zstd_frame((b"int main(void) { return 0; }\n" * 200)[:4096]))
    write("fuzz_zpiece", "req", struct.pack(">H", 5) + struct.pack(">BI", 0, 7))


def main():
    bencode_seeds()
    metainfo_seeds()
    tracker_seeds()
    session_seeds()
    zpiece_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
