#!/usr/bin/python3
"""bench/lib/cluster_prep.py IMAGE EXTENTS PACKED EZIO_DIR NAME

From an image and its used extents ("OFFSET LENGTH" per line) write
  PACKED                 the extents back to back (what unicast and udpcast send)
  EZIO_DIR/NAME/<hex>    one file per extent named by its offset as 32 hex digits (what aria2c seeds)
and print the sha256 of PACKED (= of the Ezio files concatenated in name order).
"""
import hashlib
import os
import sys


def main():
    img, extf, packed, ezio, name = sys.argv[1:6]
    exts = []
    for line in open(extf):
        line = line.split("#")[0].split()
        if len(line) >= 2:
            exts.append((int(line[0], 0), int(line[1], 0)))
    exts.sort()
    os.makedirs(os.path.join(ezio, name), exist_ok=True)
    h = hashlib.sha256()
    with open(img, "rb") as src, open(packed, "wb") as out:
        for off, ln in exts:
            with open(os.path.join(ezio, name, "%032x" % off), "wb") as ef:
                src.seek(off)
                left = ln
                while left:
                    b = src.read(min(left, 4 << 20))
                    if not b:
                        sys.exit(f"short read at {off}")
                    out.write(b)
                    ef.write(b)
                    h.update(b)
                    left -= len(b)
    print(h.hexdigest())


if __name__ == "__main__":
    main()
