"""The synthesis result cache: a job whose inputs were synthesized before skips yosys and nextpnr.

Key
---
The key of a job is the sha256 of a canonical JSON document (:func:`cache_key`) that holds
everything a result depends on (:func:`hwq.synth.flow.cache_inputs` builds it):

* the sha256 of the PE's Verilog file (byte for byte: even an edited comment is a new key), its
  file name, and the sha256 of its manifest (canonical JSON) and of the harness Verilog;
* the job's options: target, DSP mapping, nextpnr ``--freq`` and ``--seed``, the power
  estimate's activity factor, the target's tool options;
* the flow itself: the yosys script and the nextpnr command line the job runs;
* hwq's own source: the sha256 of every ``hwq/synth/*.py`` file (:func:`source_digest`), so any
  change to the flow, the parsers or the power model starts a fresh cache;
* the tool versions (:func:`hwq.tools.tool_versions`: the YoWASP package versions, or the first
  line of ``--version`` of a tool overridden through ``$YOSYS`` / ``$NEXTPNR_ICE40``);
* :data:`CACHE_FORMAT`, the layout version of an entry.

Location
--------
``$HWQ_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/hwq`` (when ``$XDG_CACHE_HOME`` is an absolute
path), else ``~/.cache/hwq`` (:func:`default_cache_dir`). Entries are
``<dir>/synth/v<CACHE_FORMAT>/<key[:2]>/<key>.json``, a few kB each, written atomically
(:func:`hwq.fileio.write_atomic`), so concurrent runs may share a cache. Nothing is ever evicted:
remove the directory to clear it. An entry that cannot be read or does not hold a well-formed
result for its key is ignored (and rewritten by the next run of its job); a cache directory that
cannot be written leaves the run uncached but does not fail it.

An entry holds the result without its run times; a result served from the cache has
``cached: True`` and ``timing`` of the look-up itself (``yosys_s`` and ``nextpnr_s`` 0).

Beside an entry the cache keeps the job's iCE40 netlist as Verilog (``<key>.netlist.v.gz``,
gzip without a time stamp: :meth:`SynthCache.put_file`), so a cache hit still gives
``yosys/netlist.v`` for post-synthesis simulation (``python -m hwq.sim --netlist``).
"""

import contextlib
import gzip
import hashlib
import json
import os
import threading
from pathlib import Path

from ..fileio import write_atomic

__all__ = ["CACHE_FORMAT", "CACHE_ENV", "default_cache_dir", "source_digest", "cache_key", "SynthCache",
           "as_cache"]

#: layout version of a cache entry (part of the key and of the entry's path)
CACHE_FORMAT = 1

#: environment variable that names the cache directory
CACHE_ENV = "HWQ_CACHE_DIR"

_SOURCE_DIR = Path(__file__).resolve().parent


def default_cache_dir():
    """``$HWQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/hwq`` (absolute only), else ``~/.cache/hwq``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "hwq"
    return Path.home() / ".cache" / "hwq"


def source_digest(directory=_SOURCE_DIR):
    """sha256 over the names and contents of the ``*.py`` files of ``hwq/synth``."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(inputs):
    """The key of a job: sha256 of ``inputs`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class SynthCache:
    """A synthesis result cache in ``directory`` (default :func:`default_cache_dir`).

    ``kind`` names the subdirectory of its entries (default ``"synth"``); other content-addressed
    results use the same store under their own kind (``"explore"``: :mod:`hwq.explore.cache`).

    Thread-safe: :func:`hwq.synth.synthesize_all` calls :meth:`get` and :meth:`put` from its
    worker threads.

    Attributes
    ----------
    directory : pathlib.Path
    kind : str
    write_error : str or None
        Why the first entry that could not be written was not written (the run goes on uncached).
    """

    def __init__(self, directory=None, kind="synth"):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.kind = kind
        self.write_error = None
        self._lock = threading.Lock()

    def __repr__(self):
        return f"SynthCache({str(self.directory)!r})"

    def path(self, key):
        """The entry file of ``key``."""
        return self.directory / self.kind / f"v{CACHE_FORMAT}" / key[:2] / f"{key}.json"

    def get(self, key, required=()):
        """The stored result of ``key``, or ``None`` when there is none or it is unusable.

        An entry is used only if it is JSON of this :data:`CACHE_FORMAT`, names ``key`` and holds
        a result dict with every key in ``required``.
        """
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or entry.get("key") != key:
            return None
        result = entry.get("result")
        if not isinstance(result, dict) or not all(k in result for k in required):
            return None
        return result

    def put(self, key, inputs, result):
        """Store ``result`` under ``key`` (atomically); ``inputs`` are kept beside it for reading.

        Returns whether the entry was written; an ``OSError`` is recorded in :attr:`write_error`.
        """
        entry = {"format": CACHE_FORMAT, "key": key, "inputs": inputs, "result": result}
        return self._write(self.path(key), lambda: json.dumps(entry, indent=1, sort_keys=True, allow_nan=False) + "\n")

    def _write(self, path, data):
        """Write ``data()`` (text or bytes) to ``path`` atomically; on an ``OSError`` record it in
        :attr:`write_error` and return False."""
        try:
            content = data()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, content)
        except OSError as exc:
            with self._lock:
                if self.write_error is None:
                    self.write_error = f"cannot write {path} ({exc.strerror or exc})"
            return False
        return True

    def file_path(self, key, name):
        """The gzip file that holds the job file ``name`` of entry ``key``."""
        return self.path(key).with_name(f"{key}.{name}.gz")

    def put_file(self, key, name, source):
        """Keep a copy of the job file ``source`` as ``name`` of entry ``key`` (gzip, atomically).

        Returns whether it was written; an ``OSError`` is recorded in :attr:`write_error`.
        """
        return self._write(self.file_path(key, name), lambda: gzip.compress(Path(source).read_bytes(), mtime=0))

    def get_file(self, key, name, destination):
        """Write the job file ``name`` of entry ``key`` to ``destination``; return whether there
        was one (a missing or damaged copy is ``False``)."""
        try:
            data = gzip.decompress(self.file_path(key, name).read_bytes())
        except (OSError, EOFError, gzip.BadGzipFile):
            return False
        write_atomic(destination, data)
        return True

    def clear(self):
        """Remove every entry of this :data:`CACHE_FORMAT`."""
        import shutil
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.directory / self.kind / f"v{CACHE_FORMAT}")


def as_cache(cache):
    """The :class:`SynthCache` an API ``cache`` argument means, or ``None`` for no cache.

    ``None`` or ``False``: no cache; ``True``: :func:`default_cache_dir`; a path: that
    directory; a :class:`SynthCache`: itself.
    """
    if cache is None or cache is False:
        return None
    if cache is True:
        return SynthCache()
    if isinstance(cache, SynthCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return SynthCache(cache)
    from ..errors import InputError
    raise InputError(f"cache must be None, True, a directory or a SynthCache, not {cache!r}")
