"""Hand-written shim, kept one release: `yooptx.train` moved to `yooptx.training.module`, `yooptx.training.checkpoints`, `yooptx.training.driver`, `yooptx.metrics`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.training.module', 'yooptx.training.checkpoints', 'yooptx.training.driver', 'yooptx.metrics')
