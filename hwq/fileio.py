"""Atomic file and directory output: a reader never sees a half-written file."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError

__all__ = ["write_atomic", "check_writable_dir", "staged_output"]


def write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _existing_ancestor(path):
    probe = Path(os.path.abspath(path))
    while not probe.exists():
        probe = probe.parent
    return probe


def check_writable_dir(path):
    """Raise :class:`InputError` unless ``path`` is, or can be created as, a writable directory.

    The check really creates (and removes) a directory in the nearest existing ancestor, so it
    holds for root and for read-only file systems too. Returns ``path`` as a :class:`Path`.
    """
    path = Path(path)
    probe = _existing_ancestor(path)
    if not probe.is_dir():
        raise InputError(f"output path {path} is not a directory ({probe} is a file); choose another --out")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".hwq-probe."))
    except OSError as exc:
        raise InputError(f"output directory {path} is not writable ({exc.strerror}); "
                       "choose another --out or fix its permissions") from None
    return path


@contextlib.contextmanager
def staged_output(out_dir):
    """Yield a fresh staging directory; on success move its files into ``out_dir``.

    On any exception the staging directory is removed and ``out_dir`` is left as it was.
    Files are moved one by one with :func:`os.replace`, each atomically.
    """
    out_dir = check_writable_dir(out_dir)
    stage = Path(tempfile.mkdtemp(dir=_existing_ancestor(out_dir), prefix=f".{out_dir.name}.stage."))
    try:
        yield stage
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in sorted(stage.iterdir()):
            target = out_dir / item.name
            if item.is_dir():
                if target.exists():
                    shutil.rmtree(target)
                os.replace(item, target)
            else:
                os.replace(item, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
