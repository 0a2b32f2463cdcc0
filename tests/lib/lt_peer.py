#!/usr/bin/python3
"""A libtorrent (rasterbar) peer for the diskswarm interop tests.

Run with Debian's /usr/bin/python3 (python3-libtorrent); the python3 on PATH
may be a separate build without the module.

  lt_peer.py download TORRENT --save DIR --listen PORT --peer HOST:PORT [--timeout S]
      Download into DIR (Ezio layout: DIR/<name>/<hex offset>) from the given
      peer(s); exit 0 once libtorrent has every piece (it checks each SHA-1).
  lt_peer.py seed TORRENT --save DIR --listen PORT [--peer HOST:PORT] [--timeout S]
      Check the data in DIR against the torrent, print "READY <port>" once it
      is a complete seed, then serve until SIGTERM/SIGINT or the timeout.
      With --until-complete-peers N it exits 0 once it has seen N peers
      holding every piece.
  lt_peer.py make DIR NAME OUT.torrent [--piece-size N] [--tracker URL]
      Build a v1 torrent with libtorrent from an Ezio directory DIR/NAME/<hex>
      (files in offset order), the way Clonezilla's gen-torrent-from-ptcl does.
  lt_peer.py files TORRENT
      Print "name/path length" for every file as libtorrent parses the torrent,
      then "piece_length N" and "num_pieces N".

Only TCP on 127.0.0.1: DHT, LSD, UPnP, NAT-PMP and uTP are off.  All peers
share 127.0.0.1, so allow_multiple_connections_per_ip is on.
"""

import argparse
import signal
import sys
import time

import libtorrent as lt

stop = False


def on_signal(_sig, _frm):
    global stop
    stop = True


def log(msg):
    print(f"[lt_peer] {msg}", file=sys.stderr, flush=True)


def make_session(port):
    s = {
        "listen_interfaces": f"127.0.0.1:{port}",
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_tcp": True,
        "enable_outgoing_tcp": True,
        "allow_multiple_connections_per_ip": True,
        "anonymous_mode": False,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.peer_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.storage_notification,
        "user_agent": "lt_peer/diskswarm-interop",
        # a LAN test: don't choke the other side or wait long before retrying
        "peer_connect_timeout": 5,
        "min_reconnect_time": 1,
        "announce_to_all_tiers": False,
    }
    return lt.session(s)


def parse_peer(p):
    host, _, port = p.rpartition(":")
    return (host or "127.0.0.1", int(port))


def drain_alerts(ses, verbose):
    errors = []
    for a in ses.pop_alerts():
        cat = a.category()
        if cat & lt.alert.category_t.error_notification:
            errors.append(a.message())
            log(f"alert(error) {type(a).__name__}: {a.message()}")
        elif verbose:
            log(f"alert {type(a).__name__}: {a.message()}")
    return errors


def add(ses, args, seed_mode):
    ti = lt.torrent_info(args.torrent)
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = args.save
    atp.storage_mode = lt.storage_mode_t.storage_mode_sparse
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    if seed_mode:
        # do not trust the data: a full recheck, so a wrong layout fails here
        atp.flags &= ~lt.torrent_flags.seed_mode
    return ses.add_torrent(atp), ti


def connect_peers(h, peers):
    for p in peers:
        try:
            h.connect_peer(parse_peer(p))
        except Exception as e:  # noqa: BLE001 - report and go on
            log(f"connect_peer {p}: {e}")


def cmd_files(args):
    ti = lt.torrent_info(args.torrent)
    fs = ti.files()
    for i in range(fs.num_files()):
        print(f"{fs.file_path(i)} {fs.file_size(i)}")
    print(f"piece_length {ti.piece_length()}")
    print(f"num_pieces {ti.num_pieces()}")
    print(f"info_hash {ti.info_hashes().v1}")
    return 0


def cmd_make(args):
    import os
    fs = lt.file_storage()
    d = os.path.join(args.dir, args.name)
    for f in sorted(os.listdir(d), key=lambda n: int(n, 16)):
        fs.add_file(f"{args.name}/{f}", os.path.getsize(os.path.join(d, f)))
    # v1_only: libtorrent 2.0 defaults to hybrid v1+v2 torrents
    t = lt.create_torrent(fs, args.piece_size, lt.create_torrent.v1_only)
    t.set_creator("lt_peer")
    if args.tracker:
        t.add_tracker(args.tracker)
    lt.set_piece_hashes(t, args.dir)
    with open(args.out, "wb") as f:
        f.write(lt.bencode(t.generate()))
    return 0


def cmd_download(args):
    ses = make_session(args.listen)
    h, ti = add(ses, args, False)
    log(f"downloading {ti.name()} ({ti.num_pieces()} pieces of {ti.piece_length()}) "
        f"from {', '.join(args.peer)}")
    deadline = time.monotonic() + args.timeout
    next_connect = 0.0
    next_report = 0.0
    while not stop:
        now = time.monotonic()
        if now > deadline:
            st = h.status()
            log(f"TIMEOUT after {args.timeout}s: progress {st.progress:.3f}, "
                f"{st.num_pieces}/{ti.num_pieces()} pieces, peers {st.num_peers}")
            return 2
        st = h.status()
        if st.errc.value() != 0:
            log(f"torrent error: {st.errc.message()}")
            return 1
        if st.is_seeding or st.state == lt.torrent_status.seeding:
            log(f"complete: {ti.num_pieces()} pieces, "
                f"{st.total_payload_download} payload bytes downloaded")
            h.flush_cache()
            time.sleep(0.5)
            return 0
        # (re)connect while we have no peer: the other side may not listen yet
        if st.num_peers == 0 and now >= next_connect:
            connect_peers(h, args.peer)
            next_connect = now + 2
        if now >= next_report:
            log(f"progress {st.progress * 100:.1f}% peers {st.num_peers} "
                f"rate {st.download_payload_rate / 1048576:.1f} MiB/s")
            next_report = now + 2
        drain_alerts(ses, args.verbose)
        time.sleep(0.1)
    return 130


def cmd_seed(args):
    ses = make_session(args.listen)
    h, ti = add(ses, args, True)
    deadline = time.monotonic() + args.timeout
    ready = False
    next_connect = 0.0
    complete_peers = set()
    while not stop:
        now = time.monotonic()
        if now > deadline:
            if args.until_complete_peers:
                log(f"TIMEOUT: saw {len(complete_peers)} complete peers")
                return 2
            log("seed time over")
            return 0
        st = h.status()
        if st.errc.value() != 0:
            log(f"torrent error: {st.errc.message()}")
            return 1
        if not ready:
            if st.state in (lt.torrent_status.checking_files,
                            lt.torrent_status.checking_resume_data):
                time.sleep(0.1)
                continue
            if st.is_seeding:
                ready = True
                print(f"READY {args.listen}", flush=True)
                log(f"seeding {ti.name()}: {ti.num_pieces()} pieces verified from {args.save}")
            elif st.state != lt.torrent_status.checking_files:
                log(f"data in {args.save} incomplete: progress {st.progress:.3f} "
                    f"({st.num_pieces}/{ti.num_pieces()} pieces)")
                return 1
        if ready and args.peer and st.num_peers == 0 and now >= next_connect:
            connect_peers(h, args.peer)
            next_connect = now + 2
        if ready and args.until_complete_peers:
            for p in h.get_peer_info():
                if p.pieces and all(p.pieces):
                    complete_peers.add(p.ip)
            # libtorrent drops seed-to-seed connections quickly; count uploads too
            if len(complete_peers) >= args.until_complete_peers:
                log(f"{len(complete_peers)} peer(s) complete; uploaded "
                    f"{st.total_payload_upload} bytes")
                return 0
        drain_alerts(ses, args.verbose)
        time.sleep(0.1)
    st = h.status()
    log(f"stopping; uploaded {st.total_payload_upload} payload bytes")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("download", "seed"):
        p = sub.add_parser(name)
        p.add_argument("torrent")
        p.add_argument("--save", required=True)
        p.add_argument("--listen", type=int, required=True)
        p.add_argument("--peer", action="append", default=[])
        p.add_argument("--timeout", type=float, default=60)
        p.add_argument("--verbose", action="store_true")
        if name == "seed":
            p.add_argument("--until-complete-peers", type=int, default=0)
    p = sub.add_parser("files")
    p.add_argument("torrent")
    p = sub.add_parser("make")
    p.add_argument("dir")
    p.add_argument("name")
    p.add_argument("out")
    p.add_argument("--piece-size", type=int, default=256 * 1024)
    p.add_argument("--tracker")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.cmd == "files":
        return cmd_files(args)
    if args.cmd == "make":
        return cmd_make(args)
    if args.cmd == "download":
        if not args.peer:
            ap.error("download needs --peer")
        return cmd_download(args)
    return cmd_seed(args)


if __name__ == "__main__":
    sys.exit(main())
