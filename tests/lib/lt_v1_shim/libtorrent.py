"""libtorrent shim: make Clonezilla's gen-torrent-from-ptcl work with libtorrent 2.0.

Why: /usr/bin/gen-torrent-from-ptcl (Clonezilla, from Ezio's
partclone_create_torrent.py) calls `lt.create_torrent(fs, 16 MiB, flags=0)`,
then sets the v1 SHA-1 piece hashes from partclone's torrent.info and calls
generate().  With libtorrent 1.x that made a v1 torrent.  libtorrent 2.0
(Debian 12's python3-libtorrent 2.0.8) makes a v1+v2 hybrid by default, so
generate() fails with "missing or invalid 'hash' entry" because no v2 (SHA-256
merkle) hashes were set.  The script is a system file we must not edit.

How: put this directory first on PYTHONPATH.  It loads the real libtorrent
module (skipping this directory on the search path), copies its namespace and
replaces create_torrent with a wrapper that always adds
create_torrent.v1_only, which gives exactly the v1 torrent Clonezilla expects.
Nothing else changes.  Run the script with /usr/bin/python3 (the interpreter
that has python3-libtorrent).
"""
import importlib.machinery
import importlib.util
import os
import sys
import types

_here = os.path.dirname(os.path.abspath(__file__))
_path = [p for p in sys.path if os.path.abspath(p or '.') != _here]
_spec = importlib.machinery.PathFinder.find_spec('libtorrent', _path)
if _spec is None:
    raise ImportError("lt_v1_shim: the real libtorrent module is not installed "
                      "(apt-get install python3-libtorrent, run with /usr/bin/python3)")
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)

_m = types.ModuleType('libtorrent')
_m.__dict__.update({k: getattr(_real, k) for k in dir(_real) if not k.startswith('__')})
_m.__doc__ = _real.__doc__


def _create_torrent(fs, piece_size=0, flags=0):
    return _real.create_torrent(fs, piece_size, flags | _real.create_torrent.v1_only)


# keep the class attributes (flags such as v1_only, optimize_alignment) reachable
for _k in dir(_real.create_torrent):
    if not _k.startswith('_'):
        try:
            setattr(_create_torrent, _k, getattr(_real.create_torrent, _k))
        except (AttributeError, TypeError):
            pass

_m.create_torrent = _create_torrent
_m.__lt_v1_shim__ = True
sys.modules['libtorrent'] = _m
