"""Recipe `poincare`: Poincaré embeddings of a hierarchy's transitive closure (Nickel & Kiela 2017).

Batches hold "edge" `[rows, edges_per_row, 2]` (child, parent ids): a step trains on
`config.batch_size * data.edges_per_row` edges, read as a few rows. For each edge (u, v) the
loss samples `num_negatives` nodes uniformly from the step key, drops those related to u (u
itself, its ancestors or descendants in the closure: the reference's "ground-truth
negatives"; only for closures up to DENSE_RELATED_MAX nodes, whose [N, N] table fits on
device: in the noun closure a uniform draw hits one of u's ~9 ancestors with probability
~1e-4, so none are dropped there), and takes the softmax cross-entropy of -d(u, v) against
-d(u, n_k). Riemannian SGD (gradient × (1 - c‖x‖²)²/4, retraction, as the reference) or
Riemannian Adam; the first `burnin_epochs` run at `burnin_factor` × lr; after every update
the points are projected into the ball with the margin `model.eps`.

Config sections:
  model:     dim, [c (curvature, default 1), init_range (1e-3), eps (projection margin 1e-5)]
  data:      closure ("mammals": the shipped file; "nouns": /usr/share/wordnet or
             $WORDNET_DIR; or a path to a "child<TAB>parent" file), edges_per_row
  objective: num_negatives, burnin_epochs, burnin_factor, [burnin_negatives: "uniform"
             (default) | "degree": during burn-in draw negatives ∝ (number of descendants)^0.75,
             as the reference's graph_dataset.pyx; leaves are never drawn then]
  optim:     lr (the loop's other optim keys are not used)
  riemannian: optimizer ("rsgd" | "radam"), [momentum (rsgd), b1, b2 (radam),
             retraction ("retr" | "exp")]
Evaluators: `dict(split="test")`: reconstruction of the whole closure (every node's parents
ranked against its non-neighbours), logged as `test/mean_rank` and `test/map`.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxemb.data import hierarchy
from jaxemb.evaluate import reconstruction
from jaxemb.geometry import poincare
from jaxemb.nn import hyperbolic
from jaxemb.optimizers import riemannian
from jaxemb.recipes.base import Recipe, TrainData, check_keys, evaluator_specs

MODEL_KEYS = frozenset({"dim", "c", "init_range", "eps"})
DATA_KEYS = frozenset({"closure", "edges_per_row"})
OBJECTIVE_KEYS = frozenset({"num_negatives", "burnin_epochs", "burnin_factor",
                            "burnin_negatives"})
RIEMANNIAN_KEYS = frozenset({"optimizer", "momentum", "b1", "b2", "retraction"})
EVALUATOR_KEYS = frozenset({"split", "batch_size"})
# Up to this many nodes the "related to u" test of negatives is a dense [N, N] table.
DENSE_RELATED_MAX = 20000


def load_closure(name: str) -> hierarchy.Graph:
  """"mammals", "nouns" or a path to a closure file -> `hierarchy.Graph`."""
  if name == "mammals":
    return hierarchy.to_graph(hierarchy.load_mammals())
  if name == "nouns":
    wn = os.environ.get("WORDNET_DIR") or hierarchy.DEFAULT_WORDNET_DIR
    return hierarchy.to_graph(hierarchy.noun_closure(hierarchy.read_nouns(wn)))
  if os.path.isfile(name):
    return hierarchy.to_graph(hierarchy.read_closure(name))
  raise ValueError(f"config.data.closure={name!r} is not 'mammals', 'nouns' or a file")


class PoincareRecipe(Recipe):
  """Poincaré embeddings of one closure, evaluated by reconstruction."""

  config_keys = frozenset({"model", "data", "objective", "riemannian"})
  table_metrics = ("map", "mean_rank")

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    for section, keys in (("model", MODEL_KEYS), ("data", DATA_KEYS),
                          ("objective", OBJECTIVE_KEYS), ("riemannian", RIEMANNIAN_KEYS)):
      if section not in config:
        raise ValueError(f"config.{section} is missing (keys: {sorted(keys)})")
      check_keys(section, config[section], keys)
    if int(config.objective.num_negatives) < 1:
      raise ValueError(f"config.objective.num_negatives must be >= 1, got "
                       f"{config.objective.num_negatives}")
    if config.riemannian.get("optimizer", "rsgd") not in ("rsgd", "radam"):
      raise ValueError(f"config.riemannian.optimizer={config.riemannian.optimizer!r} is not "
                       f"'rsgd' or 'radam'")
    if int(config.data.edges_per_row) < 1:
      raise ValueError(f"config.data.edges_per_row must be >= 1, got "
                       f"{config.data.edges_per_row}")
    mode = config.objective.get("burnin_negatives", "uniform")
    if mode not in ("uniform", "degree"):
      raise ValueError(f"config.objective.burnin_negatives={mode!r} is not 'uniform' or "
                       f"'degree'")
    self.graph = load_closure(config.data.closure)
    self.c = float(config.model.get("c", 1.0))
    self.eps = float(config.model.get("eps", 1e-5))
    n = self.graph.num_nodes
    self.related = None
    if n <= DENSE_RELATED_MAX:
      related = np.eye(n, dtype=bool)
      related[self.graph.edges[:, 0], self.graph.edges[:, 1]] = True
      related[self.graph.edges[:, 1], self.graph.edges[:, 0]] = True
      self.related = related
    self.degree_cdf = None
    if mode == "degree":
      # The reference adds an edge (t, h)'s weight to counts[h], then takes counts ** 0.75.
      counts = np.bincount(self.graph.edges[:, 1], minlength=n).astype(np.float64) ** 0.75
      cdf = np.cumsum(counts / counts.sum())
      cdf[-1] = 1.0  # float32 uniforms are < 1: the search never runs past the last node
      self.degree_cdf = cdf.astype(np.float32)
    self._dist_fn = None

  @property
  def edges_per_step(self) -> int:
    return int(self.config.batch_size) * int(self.config.data.edges_per_row)

  @property
  def steps_per_epoch(self) -> int:
    return math.ceil(len(self.graph.edges) / self.edges_per_step)

  @property
  def burnin_steps(self) -> int:
    return int(self.config.objective.get("burnin_epochs", 0)) * self.steps_per_epoch

  def negatives(self, key: jax.Array, shape: tuple[int, ...], burnin=False) -> jax.Array:
    """Negative node ids: uniform, or (with burnin_negatives="degree", where `burnin` is true)
    drawn ∝ descendants^0.75 by inverse CDF."""
    uniform = jax.random.randint(key, shape, 0, self.graph.num_nodes, jnp.int32)
    if self.degree_cdf is None:
      return uniform
    u = jax.random.uniform(jax.random.fold_in(key, 1), shape)
    degree = jnp.searchsorted(jnp.asarray(self.degree_cdf), u, side="right").astype(jnp.int32)
    return jnp.where(burnin, degree, uniform)

  # --- model, loss, data -----------------------------------------------------------------------

  def model(self, rngs: nnx.Rngs) -> hyperbolic.PoincareEmbedding:
    m = self.config.model
    return hyperbolic.PoincareEmbedding(self.graph.num_nodes, int(m.dim), rngs=rngs, c=self.c,
                                        init_range=float(m.get("init_range", 1e-3)))

  def loss(self, model, extra_params, batch, key):
    del extra_params
    edge = batch["edge"].reshape(-1, 2)
    u, v = edge[:, 0], edge[:, 1]
    k = int(self.config.objective.num_negatives)
    # "burnin": a per-row flag the host transform adds for the degree-based burn-in negatives
    burnin = batch["burnin"][0] if "burnin" in batch else False
    neg = self.negatives(key, (edge.shape[0], k), burnin)
    targets = jnp.concatenate([v[:, None], neg], axis=1)  # [B, 1 + K]
    logits = -poincare.dist(model(u)[:, None, :], model(targets), self.c)
    if self.related is not None:
      bad = jnp.asarray(self.related)[u[:, None], neg]
      logits = logits.at[:, 1:].set(jnp.where(bad, -jnp.inf, logits[:, 1:]))
    loss = jnp.mean(jax.nn.logsumexp(logits, axis=-1) - logits[:, 0])
    return loss, {"loss": loss}

  def train_data(self) -> TrainData:
    c = self.config
    epochs = -(-c.total_steps * self.edges_per_step // len(self.graph.edges)) + 1
    transform = None
    if self.degree_cdf is not None and self.burnin_steps:
      burnin_steps = self.burnin_steps
      # one global batch per step: the batch index is the step
      transform = lambda batch, index: {
          **batch, "burnin": np.full(len(batch["edge"]), index < burnin_steps)}
    return TrainData(hierarchy.EdgeChunks(self.graph.edges, int(c.data.edges_per_row),
                                          seed=int(c.seed), epochs=epochs),
                     transform=transform, shuffle=False)

  # --- optional ------------------------------------------------------------------------------

  def optimizer(self):
    """Riemannian SGD (or Adam) on the points; burn-in at a reduced rate, then constant."""
    o, obj = self.config.riemannian, self.config.objective
    lr = float(self.config.optim.lr)
    burnin = self.burnin_steps
    factor = float(obj.get("burnin_factor", 0.1))
    if burnin:
      schedule = optax.piecewise_constant_schedule(lr * factor, {burnin: 1.0 / factor})
    else:
      schedule = optax.constant_schedule(lr)
    ball = riemannian.PoincareBall(self.c, self.eps)
    if o.get("optimizer", "rsgd") == "radam":
      tx = riemannian.riemannian_adam(schedule, ball, b1=float(o.get("b1", 0.9)),
                                      b2=float(o.get("b2", 0.999)),
                                      retraction=o.get("retraction", "retr"))
    else:
      tx = riemannian.riemannian_sgd(schedule, ball, momentum=float(o.get("momentum", 0.0)),
                                     retraction=o.get("retraction", "retr"))
    # Everything the model holds is a manifold point; nothing else trains.
    return riemannian.partition(tx, optax.set_to_zero(), riemannian.path_has("points")), (
        schedule)

  def post_update(self, params):
    project = lambda tree: jax.tree.map(lambda x: poincare.project(x, self.c, self.eps), tree)
    return {**params, "model": project(params["model"])}

  def evaluator(self, specs, mesh):
    specs = evaluator_specs(specs, EVALUATOR_KEYS)
    if not specs:
      return None
    for spec in specs:
      if spec.get("split", "test") != "test":
        raise ValueError(f"poincare evaluators have one split, 'test' (the closure), got "
                         f"{spec['split']!r}")

    def evaluate(model, step):
      del step
      points = jax.device_get(model.points[...])
      if self._dist_fn is None:
        c = self.c
        self._dist_fn = jax.jit(lambda pts, rows: poincare.dist(
            jnp.take(pts, rows, axis=0)[:, None], pts[None], c))
      out = {}
      for spec in specs:
        bs = int(spec.get("batch_size", 256))
        m = reconstruction.reconstruction(lambda rows: self._dist_fn(points, rows),
                                          self.graph.edges, self.graph.num_nodes, bs)
        out.update({"test/mean_rank": m["mean_rank"], "test/map": m["map"]})
      return out

    return evaluate


RECIPE = PoincareRecipe
