"""NNX modules (encoders, pooling, SSM layers, tables). No training logic lives here.

Parameters carry *logical* axis names ("vocab", "embed", "mlp", "qkv", ...) as metadata only;
`jaxemb.train.mesh` maps them to mesh axes. Flax 0.12 would otherwise try to shard each variable
eagerly on creation, which needs a mesh whose axes are those logical names, so eager sharding
is switched off for the whole package.
"""

from flax import nnx

nnx.use_eager_sharding(False)
