"""A non-text recipe living outside `jaxemb/recipes/`: matrix factorisation of ratings.

It proves the recipe interface: its own model (two row-sharded tables), loss with on-device
negative sampling from the step key, host transform seeded by the batch index, its own
optimiser (SGD), a post-update projection (rows back into the unit ball), an evaluator and no
export. Configs name it by dotted path: `config.recipe = "toy_recipes.MatrixFactorization"`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxemb.recipes import Recipe, TrainData, check_keys


class Ratings:
  """Random-access ratings of a rank-2 ground truth: example i is a pure function of i."""

  def __init__(self, users: int, items: int, num: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    self.u = rng.normal(size=(users, 2)) / 2
    self.v = rng.normal(size=(items, 2)) / 2
    self.users, self.items, self.num = users, items, num

  def __len__(self):
    return self.num

  def __getitem__(self, i):
    rng = np.random.default_rng([7, int(i)])
    user, item = int(rng.integers(self.users)), int(rng.integers(self.items))
    return {"user": np.int32(user), "item": np.int32(item),
            "rating": np.float32(self.u[user] @ self.v[item])}


class Tables(nnx.Module):
  def __init__(self, users: int, items: int, dim: int, *, rngs: nnx.Rngs):
    init = nnx.with_partitioning(nnx.initializers.normal(0.1), ("rows", None))
    self.users = nnx.Param(init(rngs.params(), (users, dim)))
    self.items = nnx.Param(init(rngs.params(), (items, dim)))

  def __call__(self, user, item):
    return jnp.sum(self.users.value[user] * self.items.value[item], axis=-1)


def project_rows(table):
  """Rows of norm > 1 scaled back onto the unit sphere."""
  norms = jnp.linalg.norm(table, axis=-1, keepdims=True)
  return table / jnp.maximum(norms, 1.0)


class MatrixFactorization(Recipe):
  config_keys = frozenset({"model", "data"})

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    check_keys("model", config.model, {"num_users", "num_items", "dim", "negatives"})
    check_keys("data", config.data, {"num", "noise"})

  def model(self, rngs):
    m = self.config.model
    return Tables(m.num_users, m.num_items, m.dim, rngs=rngs)

  def loss(self, model, extra_params, batch, key):
    fit = jnp.mean((model(batch["user"], batch["item"]) - batch["rating"]) ** 2)
    # Negatives drawn on device from the step key: random items pushed towards 0.
    shape = (batch["user"].shape[0], self.config.model.negatives)
    negatives = jax.random.randint(key, shape, 0, self.config.model.num_items)
    neg = jnp.mean(model(batch["user"][:, None], negatives) ** 2)
    return fit + 0.1 * neg, {"fit": fit}

  def train_data(self):
    m, d = self.config.model, self.config.data
    noise = d.noise

    def transform(batch, index):
      # Host-side sampling seeded by the global batch index: reproducible after a resume.
      rng = np.random.default_rng([11, index])
      return {**batch, "rating": batch["rating"] + noise * rng.normal(
          size=batch["rating"].shape).astype(np.float32)}

    return TrainData(Ratings(m.num_users, m.num_items, d.num), transform)

  def optimizer(self):
    schedule = optax.constant_schedule(self.config.optim.lr)
    return optax.sgd(schedule), schedule

  def post_update(self, params):
    model = {name: project_rows(table) for name, table in params["model"].items()}
    return {**params, "model": model}

  def evaluator(self, specs, mesh):
    if not specs:
      return None
    data = Ratings(self.config.model.num_users, self.config.model.num_items, 256, seed=0)
    rows = [data[i] for i in range(256)]
    batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}

    def evaluate(model, step):
      err = jnp.mean((model(batch["user"], batch["item"]) - batch["rating"]) ** 2)
      return {"validation/mse": float(err)}

    return evaluate


def config(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(dict(
      recipe="toy_recipes.MatrixFactorization", seed=0,
      model=dict(num_users=16, num_items=12, dim=8, negatives=4),
      data=dict(num=4096, noise=0.01),
      optim=dict(lr=5.0), mesh=dict(data=-1, fsdp=1, tensor=1),
      logical_axis_rules=(("rows", "data"),),
      batch_size=32, total_steps=20, stop_at_step=0, log_every=1, checkpoint_every=10,
      keep_checkpoints=3, best_metric="validation/mse", best_mode="min",
      async_checkpoint=True, nonfinite="stop", eval_every=10,
      evaluators=[dict(name="mse")], final_evaluators=[], export=False, progress=False))
  c.update(overrides)
  return c
