#!/usr/bin/env python3
"""dstool.py — independent checks for diskswarm's e2e tests (standard library only; uses libtorrent if present).

  dstool.py layout TORRENT IMAGE EXTENTS NAME PIECE_LEN
      The torrent is a v1 multi-file torrent in the Ezio layout: info.name == NAME, one file per extent named by
      its device offset as 32 lowercase hex digits, in order, file length == extent length, piece length ==
      PIECE_LEN, and every piece hash equals SHA-1 of the extents' bytes read from IMAGE. If python3-libtorrent
      is importable it must load the torrent too and agree on size and piece count.
  dstool.py outside TARGET IMAGE EXTENTS BYTE SIZE
      TARGET holds IMAGE's bytes inside every extent and BYTE (e.g. 0xa5) everywhere else up to SIZE, and is
      exactly SIZE bytes long.
  dstool.py jsonlines FILE
      Every line of FILE is a JSON object with a "type"; the last one is {"type":"done","ok":true,...}.
      Prints the number of progress lines.
  dstool.py jsonhas FILE VALUE...
      FILE holds one JSON object (possibly pretty-printed); each VALUE (string, or integer if it parses as one)
      occurs somewhere among its values.
  dstool.py corrupt FILE OFFSET
      Flip every bit of the byte at OFFSET in FILE.
"""
import hashlib
import json
import os
import sys


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
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            v, i = bdecode(data, i)
            out[k] = v
        return out, i + 1
    if c.isdigit():
        j = data.index(b":", i)
        n = int(data[i:j])
        return data[j + 1:j + 1 + n], j + 1 + n
    raise ValueError("bad bencode at %d" % i)


def read_extents(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].split()
            if len(line) >= 2:
                out.append((int(line[0], 0), int(line[1], 0)))
    return out


def fail(msg):
    print("dstool: " + msg, file=sys.stderr)
    sys.exit(1)


def cmd_layout(torrent, image, extents_path, name, piece_len):
    piece_len = int(piece_len, 0)
    raw = open(torrent, "rb").read()
    meta, end = bdecode(raw)
    if end != len(raw):
        fail("trailing bytes after the torrent dictionary")
    info = meta.get(b"info")
    if not isinstance(info, dict):
        fail("no info dictionary")
    if info.get(b"name") != name.encode():
        fail("info.name is %r, expected %r" % (info.get(b"name"), name))
    if info.get(b"piece length") != piece_len:
        fail("piece length is %r, expected %d" % (info.get(b"piece length"), piece_len))
    files = info.get(b"files")
    if not isinstance(files, list):
        fail("not a multi-file torrent")
    extents = read_extents(extents_path)
    if len(files) != len(extents):
        fail("%d files in torrent, %d extents" % (len(files), len(extents)))
    for k, (f, (off, ln)) in enumerate(zip(files, extents)):
        want = "%032x" % off
        path = f.get(b"path")
        if path != [want.encode()]:
            fail("file %d: path %r, expected [%r]" % (k, path, want))
        if f.get(b"length") != ln:
            fail("file %d (%s): length %r, expected %d" % (k, want, f.get(b"length"), ln))
    total = sum(ln for _, ln in extents)
    pieces = info.get(b"pieces")
    npieces = (total + piece_len - 1) // piece_len
    if not isinstance(pieces, bytes) or len(pieces) != 20 * npieces:
        fail("pieces field has %d bytes, expected %d" % (len(pieces or b""), 20 * npieces))
    # hash the concatenation of the extents, read from the image
    bad = 0
    with open(image, "rb") as img:
        h = hashlib.sha1()
        filled = 0
        idx = 0
        for off, ln in extents:
            img.seek(off)
            left = ln
            while left:
                take = min(left, piece_len - filled)
                buf = img.read(take)
                if len(buf) != take:
                    fail("image shorter than extent at %d" % off)
                h.update(buf)
                filled += take
                left -= take
                if filled == piece_len:
                    if h.digest() != pieces[20 * idx:20 * idx + 20]:
                        bad += 1
                    idx += 1
                    h = hashlib.sha1()
                    filled = 0
        if filled:
            if h.digest() != pieces[20 * idx:20 * idx + 20]:
                bad += 1
            idx += 1
    if idx != npieces:
        fail("hashed %d pieces, expected %d" % (idx, npieces))
    if bad:
        fail("%d of %d piece hashes do not match the image" % (bad, npieces))
    try:
        import libtorrent as lt  # noqa: F401
    except Exception:
        lt = None
    if lt is not None:
        ti = lt.torrent_info(torrent)
        if ti.total_size() != total or ti.num_pieces() != npieces or ti.piece_length() != piece_len:
            fail("libtorrent disagrees: size %d pieces %d plen %d" % (ti.total_size(), ti.num_pieces(),
                                                                     ti.piece_length()))
        print("libtorrent %s loads it: %d files, %d pieces" % (lt.__version__, ti.num_files(), ti.num_pieces()))
    print("layout ok: %d extents, %d bytes, %d pieces" % (len(extents), total, npieces))


def cmd_outside(target, image, extents_path, byte, size):
    byte = int(byte, 0)
    size = int(size, 0)
    extents = read_extents(extents_path)
    st = os.stat(target)
    if st.st_size != size:
        fail("%s is %d bytes, expected %d" % (target, st.st_size, size))
    chunk = 1 << 20
    pat = bytes([byte]) * chunk
    with open(target, "rb") as t, open(image, "rb") as img:
        pos = 0
        regions = []
        for off, ln in extents:
            if off > pos:
                regions.append(("gap", pos, off - pos))
            regions.append(("ext", off, ln))
            pos = off + ln
        if pos < size:
            regions.append(("gap", pos, size - pos))
        for kind, off, ln in regions:
            t.seek(off)
            img.seek(off)
            left = ln
            p = off
            while left:
                n = min(left, chunk)
                got = t.read(n)
                want = img.read(n) if kind == "ext" else pat[:n]
                if got != want:
                    at = next(i for i in range(n) if i >= len(got) or got[i] != want[i])
                    fail("%s byte at %d: %s region [%d, +%d) differs from expected" % (target, p + at, kind, off, ln))
                p += n
                left -= n
    print("outside ok: %d extents hold the image, the gaps still hold 0x%02x" % (len(extents), byte))


def cmd_jsonlines(path):
    objs = []
    with open(path) as f:
        for k, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except ValueError as e:
                fail("%s:%d: not JSON (%s): %r" % (path, k, e, line[:200]))
            if not isinstance(o, dict) or "type" not in o:
                fail("%s:%d: not an object with a type: %r" % (path, k, line[:200]))
            objs.append(o)
    if not objs:
        fail("%s: no JSON lines" % path)
    last = objs[-1]
    if last.get("type") != "done" or last.get("ok") is not True:
        fail("%s: last line is %r, expected type done with ok true" % (path, last))
    print(sum(1 for o in objs if o.get("type") == "progress"))


def walk_values(o):
    if isinstance(o, dict):
        for v in o.values():
            yield from walk_values(v)
    elif isinstance(o, list):
        for v in o:
            yield from walk_values(v)
    else:
        yield o


def cmd_jsonhas(path, *values):
    o = json.load(open(path))
    vals = list(walk_values(o))
    for v in values:
        try:
            want = int(v)
        except ValueError:
            want = v
        if want not in vals:
            fail("%s: no value %r in %s" % (path, want, json.dumps(o)[:500]))


def cmd_corrupt(path, offset):
    offset = int(offset, 0)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def main():
    cmds = {"layout": cmd_layout, "outside": cmd_outside, "jsonlines": cmd_jsonlines, "jsonhas": cmd_jsonhas,
            "corrupt": cmd_corrupt}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
