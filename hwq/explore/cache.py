"""The sweep's content-addressed result cache: a result whose inputs were computed before is read,
not recomputed, so an interrupted sweep resumes where it stopped and a finished one re-runs at once.

Keys (sha256 of canonical JSON, :func:`hwq.synth.cache.cache_key`):

- an **accuracy** result (format x bits): the float model (:func:`model_digest`: its
  architecture's ``repr`` and every parameter and buffer, byte for byte), the data
  (:func:`data_digest`), the format and bits, hwq's source (:func:`hwq_source_digest`) and the
  torch and numpy versions;
- a **point**: its accuracy key, the point (format, bits, array, mapping, nextpnr seed), the
  target, the simulation options, and what the workers report (:func:`hwq.explore.tasks.worker_environment`):
  hwq's source as they run it and the versions of yosys and nextpnr.

Entries are the files of :class:`hwq.synth.cache.SynthCache` under the ``explore`` kind in a
directory the user chooses, each written atomically by the client as its result arrives. Workers
never touch it, so workers on other machines need not reach it.
"""

import hashlib
import json
from pathlib import Path

from ..errors import InputError
from ..synth.cache import SynthCache, cache_key

__all__ = ["ExploreCache", "hwq_source_digest", "model_digest", "data_digest", "CACHE_KIND"]

#: subdirectory of the cache directory that holds the sweep's entries
CACHE_KIND = "explore"

_HWQ = Path(__file__).resolve().parent.parent


def hwq_source_digest(root=_HWQ):
    """sha256 over the relative names and contents of every ``*.py`` file of the hwq package
    (``hwq/`` and its subpackages, and the simulation benches installed as ``hwq.sim``)."""
    digest = hashlib.sha256()
    roots = [Path(root)]
    try:
        import hwq.sim as sim
        roots.append(Path(sim.__file__).resolve().parent)
    except ImportError:                                  # pragma: no cover - hwq.sim ships with hwq
        pass
    for base in roots:
        for path in sorted(base.rglob("*.py")):
            digest.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def model_digest(model):
    """sha256 of a torch model: its ``repr`` (the architecture) and its state dict, in order."""
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode() + b"\0" + array.tobytes())
    return digest.hexdigest()


def data_digest(data):
    """sha256 of a sweep's data: each array of ``data`` (a dict of numpy arrays), by name."""
    import numpy as np
    digest = hashlib.sha256()
    for name in sorted(data):
        array = np.ascontiguousarray(data[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode() + b"\0" + array.tobytes())
    return digest.hexdigest()


class ExploreCache:
    """The results of a sweep's stages, by key, in ``directory``.

    Parameters
    ----------
    directory : str or Path
        Created if missing.

    Raises
    ------
    InputError
        Before any work, if ``directory`` cannot be created or written (naming it).
    """

    def __init__(self, directory):
        from ..fileio import check_writable_dir
        self.directory = Path(directory)
        check_writable_dir(self.directory, "--cache")
        self._store = SynthCache(self.directory, kind=CACHE_KIND)

    def __repr__(self):
        return f"ExploreCache({str(self.directory)!r})"

    @staticmethod
    def key(inputs):
        """The key of ``inputs`` (a JSON-able dict)."""
        return cache_key(inputs)

    def get(self, key):
        """The stored result of ``key`` or ``None``."""
        return self._store.get(key, ("status",))

    def put(self, key, inputs, result):
        """Store ``result`` (a JSON-able dict with ``status``) under ``key``, atomically.

        Raises
        ------
        InputError
            If the entry cannot be written (the directory became unwritable during the sweep).
        """
        json.dumps(result, allow_nan=False)             # fails here, not half-written
        if not self._store.put(key, inputs, result):
            raise InputError(f"--cache {self.directory}: {self._store.write_error}")
