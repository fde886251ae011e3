"""Hand-written shim, kept one release: `yooptx.patchtst` moved to `yooptx.models.patchtst`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.models.patchtst')
