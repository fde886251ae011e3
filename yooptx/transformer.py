"""Hand-written shim, kept one release: `yooptx.transformer` moved to `yooptx.models.transformer`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.models.transformer')
