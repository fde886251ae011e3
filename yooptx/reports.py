"""Hand-written shim, kept one release: `yooptx.reports` moved to `yooptx.reporting.runner`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.reporting.runner')
