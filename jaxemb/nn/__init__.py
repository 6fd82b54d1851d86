"""NNX modules (encoders, pooling, SSM layers, tables). No training logic lives here.

Parameters carry *logical* axis names ("vocab", "embed", "mlp", "qkv", ...) as metadata only;
`jaxemb.train.mesh` maps them to mesh axes; eager sharding is switched off in
`jaxemb.functional`, imported here for that.
"""

from jaxemb import functional as _functional  # noqa: F401  (eager sharding off)
