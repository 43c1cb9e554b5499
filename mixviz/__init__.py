"""mixviz: make mixup training visible.

Mixing policies (:mod:`mixviz.mixing`), the Decoupled Mixup loss and its
relatives (:mod:`mixviz.losses`), offline and online data (:mod:`mixviz.data`),
models (:mod:`mixviz.models`), a training loop (:mod:`mixviz.train`), a run
store (:mod:`mixviz.runs`), metrics, saliency and pictures.
"""

from mixviz._validation import validation, value_checks_enabled

__version__ = "0.1.0"

__all__ = ["validation", "value_checks_enabled", "__version__"]
