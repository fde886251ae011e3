"""Hand-written shim, kept one release: `yooptx.plots` moved to `yooptx.reporting.plots`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.reporting.plots')
