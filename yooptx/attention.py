"""Hand-written shim, kept one release: `yooptx.attention` moved to `yooptx.reporting.explain`, `yooptx.runs`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.reporting.explain', 'yooptx.runs')
