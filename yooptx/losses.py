"""Hand-written shim, kept one release: `yooptx.losses` moved to `yooptx.models.losses`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.models.losses')
