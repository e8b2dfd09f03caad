"""Plug-in registries: formats, PEs, calibrators and QAT procedures register themselves.

A number format is a plug-in. Its modules register what they define when they are imported --
a :class:`~hwq.formats.base.NumberFormat` or :class:`~hwq.pe.base.ProcessingElement` subclass
through ``__init_subclass__``, a function through :meth:`Registry.register` used as a decorator --
so adding a format touches only its own modules, never a shared list (docs/architecture.md,
"Adding a format").

A registry finds its entries the first time it is read, by importing

1. every module of its built-in packages (e.g. every ``hwq/formats/*.py``);
2. every module named in the ``HWQ_PLUGINS`` environment variable (comma-separated module
   names), so that a plug-in outside hwq is also known in subprocesses such as the simulator's;
3. every entry point of the group ``hwq.plugins`` of the installed distributions
   (``[project.entry-points."hwq.plugins"]`` in a plug-in's ``pyproject.toml``).

Registering a second, different object under a taken name raises
:class:`~hwq.errors.InputError`, as hls4ml's ``register_backend`` does.

This module imports only the standard library and :mod:`hwq.errors`.
"""

import importlib
import importlib.metadata
import os
import pkgutil
import re

from .errors import InputError

__all__ = ["Registry", "PLUGIN_ENV", "ENTRY_POINT_GROUP", "FORMAT_NAME", "load_plugins"]

#: environment variable with extra plug-in modules to import (comma-separated)
PLUGIN_ENV = "HWQ_PLUGINS"
#: entry-point group of installed plug-ins
ENTRY_POINT_GROUP = "hwq.plugins"

#: what a format name is (``pattern``, ``rule`` of a :class:`Registry` keyed by format): lowercase
#: letters, since a name starts a format spec such as ``"fxp8"`` or ``"esb4k2"``
FORMAT_NAME = {"pattern": r"[a-z]+", "rule": "are lowercase letters a-z only (a name starts a spec like 'fxp8')"}

_loaded_plugins = set()


def load_plugins():
    """Import the modules named in ``$HWQ_PLUGINS`` and the ``hwq.plugins`` entry points (once each).

    Raises
    ------
    InputError
        If a named module cannot be imported (the message names it and the variable).
    """
    names = [name.strip() for name in os.environ.get(PLUGIN_ENV, "").split(",") if name.strip()]
    for name in names:
        if name in _loaded_plugins:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InputError(f"${PLUGIN_ENV} names module {name!r}, which cannot be imported: {exc}") from None
        _loaded_plugins.add(name)
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.value not in _loaded_plugins:
            entry_point.load()
            _loaded_plugins.add(entry_point.value)


class Registry:
    """Name -> object mapping that rejects duplicates and discovers its entries on first read.

    Parameters
    ----------
    what : str
        What the entries are, for messages (``"format"``, ``"processing element"``).
    packages : tuple of str
        Packages whose every module is imported before the registry is first read.
    pattern : str or None
        Regular expression every name must match in full (e.g. lowercase letters for format
        names, which start a spec like ``"fxp8"``), with ``rule`` saying it in words.

    Examples
    --------
    >>> CALIBRATORS = Registry("calibrator", packages=("hwq.formats",))
    >>> @CALIBRATORS.register("fxp")             # doctest: +SKIP
    ... def calibrate_fxp(x, bits, *, role, per_channel, options): ...
    """

    def __init__(self, what, *, packages=(), pattern=None, rule=None):
        self._what = what
        self._packages = tuple(packages)
        self._pattern = re.compile(pattern) if pattern else None
        self._rule = rule or f"match {pattern}"
        self._entries = {}
        self._discovered = False

    def register(self, name, obj=None):
        """Register ``obj`` as ``name``; without ``obj``, a decorator that registers its argument.

        Registering the same object again (e.g. a module imported under two names) is a no-op.

        Raises
        ------
        InputError
            If ``name`` is not a non-empty string, does not match the registry's pattern, or
            already names a different object.
        """
        if obj is None:
            return lambda obj: self.register(name, obj)
        if not isinstance(name, str) or not name:
            raise InputError(f"a {self._what} name must be a non-empty string, not {name!r}")
        if self._pattern is not None and not self._pattern.fullmatch(name):
            raise InputError(f"{self._what} name {name!r} is not allowed: names {self._rule}")
        existing = self._entries.get(name)
        if existing is not None and existing is not obj and _qualname(existing) != _qualname(obj):
            raise InputError(f"{self._what} {name!r} is already registered by {_qualname(existing)}; "
                             f"{_qualname(obj)} cannot take its name")
        self._entries[name] = obj
        return obj

    def unregister(self, name):
        """Remove ``name`` (for tests and interactive sessions); missing names are ignored."""
        self._entries.pop(name, None)

    def _discover(self):
        if self._discovered:
            return
        self._discovered = True
        for package in self._packages:
            module = importlib.import_module(package)
            for info in pkgutil.iter_modules(module.__path__, prefix=f"{package}."):
                importlib.import_module(info.name)
        load_plugins()

    def __getitem__(self, name):
        self._discover()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise InputError(f"unknown {self._what} {name!r}; known {self._what}s: {', '.join(self.names())}") from None

    def get(self, name, default=None):
        """The entry called ``name``, or ``default``."""
        self._discover()
        return self._entries.get(name, default)

    def __contains__(self, name):
        self._discover()
        return name in self._entries

    def names(self):
        """Every registered name, sorted."""
        self._discover()
        return sorted(self._entries)

    def __iter__(self):
        return iter(self.names())

    def __len__(self):
        return len(self.names())

    def items(self):
        """``(name, entry)`` pairs in name order."""
        return [(name, self._entries[name]) for name in self.names()]

    def values(self):
        """Entries in name order."""
        return [entry for _, entry in self.items()]

    def __repr__(self):
        return f"Registry({self._what!r}, {self._entries if self._discovered else '<not yet discovered>'})"


def _qualname(obj):
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
