"""Atomic file and directory output: a reader never sees a half-written file or a mixed directory.

Output directories (``--out``)
------------------------------
:func:`staged_output` stages a run's files in a temporary directory beside ``--out`` and, when the
run succeeds, *replaces* ``--out`` as a whole: the old directory is renamed aside, the staged one
renamed in, and the old one removed. A reader sees the old directory or the new one (or, for the
instant between the two renames, none), never a mix of the two; files of an earlier run that the
new run does not write are gone. A run that fails leaves ``--out`` exactly as it was; when a tool
failed (:class:`~hwq.errors.ToolError`), its working directory is kept in
``$TMPDIR/hwq-failed-*/`` and the error names the log there.

Because the whole directory is replaced, hwq refuses, before any work, an existing ``--out`` that
may hold someone else's files (:func:`check_output_dir`). An existing ``--out`` is accepted when it

* is empty, or
* holds the marker file :data:`MARKER` (``.hwq-output``), which every hwq output directory gets, or
* holds only *kept* files: regular files named ``README*`` or ``.git*`` (``.gitignore``,
  ``.gitkeep``, ...), such as the repository's tracked ``rtl_out/README.md``.

Kept files are carried over into the new directory (copied, unless the run wrote a file of the
same name), so a replacement never deletes them. Everything else in an accepted ``--out`` belongs
to hwq and is replaced. A symbolic link as ``--out`` is followed: the directory it points to is
replaced and the link stays. The parent of ``--out`` must be writable (the swap renames there).
"""

import contextlib
import fnmatch
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import InputError, ToolError

__all__ = ["MARKER", "write_atomic", "save_npy", "check_writable_dir", "check_output_dir", "staged_output"]

#: the file that marks a directory as hwq output, which the next run may replace as a whole
MARKER = ".hwq-output"

_MARKER_TEXT = ("This directory was written by hwq. The next hwq run into it replaces it as a whole;\n"
                "only README* and .git* files are carried over (hwq.fileio.staged_output).\n")

#: file names that are carried over into the new directory instead of being replaced
KEPT_PATTERNS = ("README*", ".git*")


def write_atomic(path, text):
    """Write ``text`` (str, as UTF-8, or bytes) to ``path`` through a temporary file in the same
    directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else
              os.fdopen(fd, "w", encoding="utf-8", newline="\n")) as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_npy(path, array):
    """Write ``array`` as a ``.npy`` file (no pickles), atomically (:func:`write_atomic`)."""
    import io

    import numpy as np
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    write_atomic(path, buffer.getvalue())


def _nearest_existing(path):
    """The nearest ancestor of ``path`` (or ``path`` itself) that exists, as an absolute path."""
    probe = Path(os.path.abspath(path))
    while True:
        try:
            os.stat(probe)
            return probe
        except (FileNotFoundError, NotADirectoryError):     # missing, or below a file
            if probe.parent == probe:
                return probe
            probe = probe.parent
        except OSError:                 # e.g. unreadable: the probe directory shows why
            return probe


def check_writable_dir(path, name="--out", option=None):
    """Raise :class:`InputError` unless ``path`` is, or can be created as, a writable directory.

    The check really creates (and removes) a directory in the nearest existing ancestor, so it
    holds for root and for read-only file systems too, and leaves nothing behind.

    Parameters
    ----------
    path : path-like
    name : str
        How the message names the directory (``"--out"``, ``"--build-dir"``, ``"build_dir"``).
    option : str or None
        What the message tells the user to choose another of (default: ``name``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    option = option or name
    probe = _nearest_existing(path)
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == Path(os.path.abspath(path)) else f"is below {probe}, a file"
        raise InputError(f"{name} {path} {where}, not a directory; choose another {option}")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".hwq-probe."))
    except OSError as exc:
        raise InputError(f"{name} {path} is not writable ({exc.strerror}); "
                         f"choose another {option} or fix its permissions") from None
    return path


def _kept(entry):
    """Whether directory entry ``entry`` (a :class:`os.DirEntry`) is a kept file."""
    return (entry.is_file(follow_symlinks=False)
            and any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in KEPT_PATTERNS))


def _scan(real):
    """``(has marker, kept file names, foreign entry names)`` of existing directory ``real``."""
    with os.scandir(real) as entries:
        entries = list(entries)
    names = {entry.name for entry in entries}
    kept = sorted(entry.name for entry in entries if entry.name != MARKER and _kept(entry))
    foreign = sorted(names - set(kept) - {MARKER})
    return MARKER in names, kept, foreign


def check_output_dir(path):
    """Check, before any work, that :func:`staged_output` may replace ``path``; return it as a Path.

    Raises
    ------
    InputError
        If ``path`` (or an ancestor) is a file, if it or its parent is not writable, if it holds
        files hwq did not write (no :data:`MARKER`, see the module docstring), or if it is the
        working directory or one of its ancestors.
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    if not real.exists():
        return check_writable_dir(path)           # probes the nearest existing ancestor
    if not real.is_dir():
        raise InputError(f"output path {path} is not a directory; choose another --out")
    if real.parent == real:
        raise InputError(f"output directory {path} is a file-system root; choose another --out")
    try:
        os.rmdir(tempfile.mkdtemp(dir=real.parent, prefix=".hwq-probe."))
    except OSError as exc:
        raise InputError(f"output directory {path} cannot be replaced: its parent {real.parent} is not writable "
                         f"({exc.strerror}); choose another --out or fix its permissions") from None
    try:
        marked, _, foreign = _scan(real)
    except OSError as exc:
        raise InputError(f"output directory {path} is not readable ({exc.strerror}); "
                         "choose another --out or fix its permissions") from None
    if foreign and not marked:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(f"output directory {path} holds files hwq did not write ({shown}) and no {MARKER} "
                         "marker; hwq replaces --out as a whole, so choose another --out, or empty or remove it")
    cwd = Path(os.path.realpath(os.getcwd()))
    if cwd == real or real in cwd.parents:
        raise InputError(f"output directory {path} holds the working directory; hwq replaces --out as a whole, "
                         "so choose another --out or run from elsewhere")
    return path


def _default_dir_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


@contextlib.contextmanager
def staged_output(out_dir):
    """Yield a fresh staging directory beside ``out_dir``; on success it replaces ``out_dir``.

    ``out_dir`` is checked first (:func:`check_output_dir`). On success the staging directory
    gets the :data:`MARKER` file and ``out_dir``'s kept files (``README*``, ``.git*``), then
    replaces ``out_dir`` by renames (old one aside, new one in, old one removed). On any
    exception the staging directory (and any parent of ``out_dir`` this call created) is removed
    and ``out_dir`` is left as it was.
    """
    out_dir = check_output_dir(out_dir)
    real = Path(os.path.realpath(out_dir))
    created = []
    for parent in reversed(real.parents):
        if not parent.exists():
            try:
                parent.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                _remove_created(created)
                raise InputError(f"cannot create {parent} for output directory {out_dir} ({exc.strerror}); "
                                 "choose another --out") from None
            created.append(parent)
    try:
        stage = Path(tempfile.mkdtemp(dir=real.parent, prefix=f".{real.name}.stage."))
    except OSError:
        _remove_created(created)
        raise
    try:
        yield stage
        _commit(stage, real)
    except BaseException as exc:
        _keep_failure_log(exc, stage)
        shutil.rmtree(stage, ignore_errors=True)
        _remove_created(created)
        raise


def _keep_failure_log(exc, stage):
    """Before ``stage`` is removed: move the working directory of a failed tool's log (a
    :class:`~hwq.errors.ToolError` raised inside it) to a kept ``hwq-failed-*`` directory in the
    system's temporary directory, and point the error's message and ``log`` there."""
    log = getattr(exc, "log", None)
    if not isinstance(exc, ToolError) or log is None:
        return
    log = Path(log)
    try:
        relative = log.parent.relative_to(stage)
    except ValueError:
        return                                   # not in the staging directory: it stays
    if not log.exists():
        return
    kept = Path(tempfile.mkdtemp(prefix="hwq-failed-")) / relative
    shutil.copytree(log.parent, kept)
    exc.args = tuple(str(arg).replace(str(log.parent), str(kept)) if isinstance(arg, str) else arg
                     for arg in exc.args)
    exc.log = kept / log.name


def _remove_created(created):
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _commit(stage, real):
    """Replace directory ``real`` by ``stage``: old aside, new in, old removed."""
    write_atomic(stage / MARKER, _MARKER_TEXT)
    mode = _default_dir_mode()
    if real.is_dir():
        mode = stat.S_IMODE(real.stat().st_mode)
        for name in _scan(real)[1]:
            if not (stage / name).exists():
                shutil.copy2(real / name, stage / name)
    os.chmod(stage, mode)
    if not real.exists():
        os.rename(stage, real)
        return
    aside = Path(tempfile.mkdtemp(dir=real.parent, prefix=f".{real.name}.old."))
    os.rename(real, aside)                       # replaces the empty directory ``aside``
    try:
        os.rename(stage, real)
    except BaseException:
        os.rename(aside, real)                   # put the old directory back
        raise
    shutil.rmtree(aside, ignore_errors=True)
