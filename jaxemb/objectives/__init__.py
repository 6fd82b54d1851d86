"""jaxemb.objectives: embedding losses and GradCache, pure functions of arrays.

Every loss returns `(loss, metrics)` with float32 scalars; none normalises its inputs (except
`cosent`, defined on cosines). Losses are looked up by name with `get_loss`.
"""

from jaxemb.objectives.contrastive import LOSSES
from jaxemb.objectives.contrastive import contrastive_logits
from jaxemb.objectives.contrastive import cosent
from jaxemb.objectives.contrastive import get_loss
from jaxemb.objectives.contrastive import info_nce
from jaxemb.objectives.contrastive import mse_distillation
from jaxemb.objectives.contrastive import scale_from_log
from jaxemb.objectives.contrastive import sigmoid_loss
from jaxemb.objectives.gradcache import chunked_contrastive_value_and_grad
from jaxemb.objectives.gradcache import chunked_value_and_grad
from jaxemb.objectives.gradcache import compiled_temp_bytes

__all__ = [
    "LOSSES",
    "chunked_contrastive_value_and_grad",
    "chunked_value_and_grad",
    "compiled_temp_bytes",
    "contrastive_logits",
    "cosent",
    "get_loss",
    "info_nce",
    "mse_distillation",
    "scale_from_log",
    "sigmoid_loss",
]
