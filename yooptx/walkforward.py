"""Hand-written shim, kept one release: `yooptx.walkforward` moved to `yooptx.training.driver`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.training.driver')
