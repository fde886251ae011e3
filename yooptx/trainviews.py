"""Hand-written shim, kept one release: `yooptx.trainviews` moved to `yooptx.reporting.trainviews`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.reporting.trainviews')
