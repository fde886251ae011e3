"""Hand-written (not exported from a notebook): the one-release shims of modules that moved into wings.

`moved(__name__, new, ...)` makes an old module path (e.g. `yooptx.train`) forward every attribute to the
modules that now hold it, and warns once, on import, where they went."""
from __future__ import annotations
import importlib, warnings

def moved(old: str, *new: str):
    "(`__getattr__`, `__dir__`) for a shim module `old` whose names now live in the modules `new` (searched in order)."
    warnings.warn(f"{old} moved to {' and '.join(new)}; the old path works for one more release: update the import",
                  FutureWarning, stacklevel=3)
    def __getattr__(name: str):
        for m in new:
            mod = importlib.import_module(m)
            if hasattr(mod, name): return getattr(mod, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved to {' and '.join(new)})")
    def __dir__():
        return sorted({n for m in new for n in dir(importlib.import_module(m)) if not n.startswith('_')})
    return __getattr__, __dir__
