"""Hand-written shim, kept one release: `yooptx.views` moved to `yooptx.reporting.views`, `yooptx.runs`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.reporting.views', 'yooptx.runs')
