# tests/lib/osimage.sh — an OS-like ext4 image for compression tests and benchmarks (source after common.sh).
#
# make_os_image FILE SIZE_MB DATA_MB: a fresh ext4 filesystem (mkfs.ext4 -d, so it works without root) holding
# about DATA_MB MiB copied from this machine's /usr — executables (/usr/bin, /usr/sbin), shared libraries
# (/usr/lib/x86_64-linux-gnu), text (headers, Python and Perl sources, documentation that is not already
# gzip'ed) — plus files with runs of zeros inside (like databases, VM disks and preallocated logs: text or
# binary chunks separated by zero runs, written as zeros, not holes), in the proportions 35/30/25/10 %. Files are
# taken in sorted order, so the same machine gives the same image. Writes FILE.manifest (sha256 of every file).
# The compression ratio depends on the machine's files; whoever uses the image prints it.

# _os_populate DEST DATA_BYTES: the files (one Python process: thousands of files, no fork per file)
_os_populate() {
    /usr/bin/python3 - "$1" "$2" <<'EOF'
import os, shutil, sys
dest, budget = sys.argv[1], int(sys.argv[2])
SKIP = (".gz", ".xz", ".bz2", ".zst", ".png", ".jpg", ".zip", ".pyc")

def files_of(roots):
    for root in roots:
        for dp, dn, fn in os.walk(root):
            dn.sort()
            for n in sorted(fn):
                p = os.path.join(dp, n)
                if n.endswith(SKIP) or os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    size = os.path.getsize(p)
                except OSError:
                    continue
                if 0 < size <= 8 << 20:
                    yield p, size

def copy_budget(share, roots):
    total = 0
    for p, size in files_of(roots):
        out = os.path.join(dest, p.lstrip("/"))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        try:
            shutil.copyfile(p, out)
        except OSError:
            continue
        total += size
        if total >= share:
            break

copy_budget(budget * 35 // 100, ["/usr/bin", "/usr/sbin"])
copy_budget(budget * 30 // 100, ["/usr/lib/x86_64-linux-gnu"])
copy_budget(budget * 25 // 100, ["/usr/include", "/usr/share/perl", "/usr/lib/python3", "/usr/share/doc"])

# files with zero runs: chunks of text or binary data separated by zeros (written, not holes)
src = []
for p, size in files_of(["/usr/share/perl", "/usr/bin"]):
    if size > 4096:
        with open(p, "rb") as f:
            src.append(f.read(65536))
    if len(src) >= 400:
        break
src = b"".join(src)
os.makedirs(os.path.join(dest, "var/lib/db"), exist_ok=True)
share, written, i = budget * 10 // 100, 0, 0
while written < share:
    size, k = 0, i
    with open(os.path.join(dest, "var/lib/db/table%03d.db" % i), "wb") as f:
        while size < 4 << 20 and written + size < share:
            chunk = 4096 * (1 + (k * 7919) % 64)
            off = (k * 104729) % max(1, len(src) - chunk)
            zeros = 4096 * (1 + (k * 31) % 256)
            f.write(src[off:off + chunk])
            f.write(bytes(zeros))
            size += chunk + zeros
            k += 1
    written += size
    i += 1
EOF
}
make_os_image() {
    local img=$1 size_mb=$2 data_mb=$3 stage budget
    budget=$((data_mb * 1048576))
    stage=$(mktemp -d "$DS_TMP/osstage.XXXXXX")
    _os_populate "$stage" "$budget" || return 1
    ds_manifest "$stage" >"$img.manifest" || return 1
    rm -f "$img"
    truncate -s "${size_mb}M" "$img"
    mkfs.ext4 -q -F -b 4096 -L dsos -d "$stage" "$img" || return 1
    rm -rf "$stage"
    e2fsck -fn "$img" >/dev/null 2>&1 || { ds_log "make_os_image: fresh fs not clean"; return 1; }
}
