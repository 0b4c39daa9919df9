"""Defers the plotting libraries gymnax imports at import time (matplotlib, seaborn, and through them scipy and
pandas): about 1.8 s of every start on a 2-core CPU, for `render` methods training never calls. The run's own
pictures import matplotlib on a thread of their own (`shell.pictures`), while the main thread compiles.

Each is replaced in `sys.modules`, while not imported yet, by a module object that imports the real library
on first attribute access and then hands over to it, so rendering still works. matplotlib's stand-in has the
package's `__path__`, so that `from matplotlib import colors` (gymnax's Pong) binds the stand-in of
`matplotlib.colors`; importing any other submodule (`matplotlib.figure`) imports the real library first."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED = ("matplotlib", "matplotlib.pyplot", "matplotlib.colors", "seaborn")


class DeferredModule(types.ModuleType):
    """Stands in for module `name` until an attribute is used; then imports it and takes its place."""

    def __getattr__(self, attribute):
        submodule = sys.modules.get(f"{self.__name__}.{attribute}")
        if isinstance(submodule, DeferredModule):  # `import matplotlib.pyplot as plt` binds its stand-in
            return submodule
        return getattr(self.load(), attribute)

    def load(self) -> types.ModuleType:
        """The real module, imported now unless it is already."""
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return importlib.import_module(self.__name__)


class RealParentFirst:
    """A finder that finds nothing: it imports the real package before a submodule of a stand-in loads, so that
    the submodule's own `import matplotlib` gets the real library."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        parent = sys.modules.get(name.rpartition(".")[0])
        if isinstance(parent, DeferredModule):
            parent.load()
        return None


def defer_plotting_imports() -> None:
    """Installs the stand-ins for the libraries in DEFERRED that are installed and not imported yet."""
    specs = {name: importlib.util.find_spec(name) for name in DEFERRED if "." not in name and name not in sys.modules}
    for name in DEFERRED:
        top = name.split(".")[0]
        if name in sys.modules or (top not in sys.modules and specs[top] is None):
            continue  # imported already, or not installed (gymnax's own import then says so)
        module = DeferredModule(name)
        module.__spec__ = specs.get(name)  # a library's stand-in: find_spec still finds it
        if module.__spec__ is not None and module.__spec__.submodule_search_locations is not None:
            module.__path__ = list(module.__spec__.submodule_search_locations)
        sys.modules[name] = module
    if not any(isinstance(finder, RealParentFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, RealParentFirst())
