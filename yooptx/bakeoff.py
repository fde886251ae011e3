"""Hand-written shim, kept one release: `yooptx.bakeoff` moved to `yooptx.experiments.bakeoff`, `yooptx.experiments.selection`, `yooptx.experiments.executors`, `yooptx.backtest`, `yooptx.baselines`."""
from yooptx._compat import moved
__getattr__, __dir__ = moved(__name__, 'yooptx.experiments.bakeoff', 'yooptx.experiments.selection', 'yooptx.experiments.executors', 'yooptx.backtest', 'yooptx.baselines')
