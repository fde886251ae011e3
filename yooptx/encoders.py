"""Hand-written shim, kept one release: `yooptx.encoders` moved to `yooptx.models.encoders`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.models.encoders')
