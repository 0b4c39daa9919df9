"""Defers the plotting libraries gymnax imports at import time (matplotlib.pyplot, seaborn, and through them
scipy and pandas): about 1.5 s of every start on a 2-core CPU, for `render` methods training never calls.

Each is replaced in `sys.modules`, while not imported yet, by a module object that imports the real library
on first attribute access and then hands over to it, so rendering still works."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED = ("matplotlib.pyplot", "seaborn")


class DeferredModule(types.ModuleType):
    """Stands in for module `name` until an attribute is used; then imports it and takes its place."""

    def __getattr__(self, attribute):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        return getattr(real, attribute)


def defer_plotting_imports() -> None:
    """Installs the stand-ins for the libraries in DEFERRED that are installed and not imported yet."""
    for name in DEFERRED:
        if name in sys.modules or importlib.util.find_spec(name.split(".")[0]) is None:
            continue  # imported already, or not installed (gymnax's own import then says so)
        module = DeferredModule(name)
        module.__spec__ = None
        sys.modules[name] = module
