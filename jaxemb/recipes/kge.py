"""Recipe `kge`: knowledge-graph embeddings (PyKEEN's sLCWA training) on the shared loop.

Batches hold "triple" `[rows, triples_per_row, 3]` (head, relation, tail ids): a step trains on
`config.batch_size * data.triples_per_row` triples (PyKEEN's batch size), read as a few rows so
the input pipeline's per-row cost stays small; the source reshuffles per epoch itself. The loss
corrupts each triple `num_negatives` times on device from the step key (PyKEEN's basic or
Bernoulli sampler), scores positives and negatives with the interaction model and applies an
sLCWA loss (margin ranking, softplus, BCE, cross-entropy, NSSA) plus an optional Lp regulariser
(PyKEEN's: one term per representation look-up). After every update the model's constraints
are applied (TransE/DistMult entity L2 norm, RotatE unit modulus), as PyKEEN does after each
optimiser step. The optimiser is plain Adam at a constant rate (PyKEEN's default, lr 1e-2).

With `objective.training="lcwa"` a batch instead holds "query" rows of unique 1-N queries
(`kg.lcwa_queries`: (head, relation) -> all tails, plus (relation, tail) -> all heads with
`objective.target="both"`), `triples_per_row` queries per row (PyKEEN's LCWA batch counts
queries), scored against every entity with multi-hot labels (loss bce or cross_entropy).

Config sections:
  model:     interaction (transe|distmult|complex|rotate|tucker|nfe), dim, [relation_dim, p,
             gamma, dropout, batch_norm (TuckER), row_axis ("fsdp": look rows up
             shard-locally, see KGEModel)]
  data:      graph ("nations", "umls", "kinships" or a directory of train/valid/test.txt),
             [data_dir], triples_per_row (config.batch_size counts rows of this many triples)
  objective: loss, [margin, adversarial_temperature], num_negatives,
             sampler (basic|bernoulli|lemon), regularizer_weight (0: none), regularizer_p,
             regularizer_normalize, negative_scoring (auto|gather|matmul, see `use_matmul`),
             training (slcwa|lcwa), target (LCWA: tail|both); sampler "lemon" (see
             `jaxemb.data.kg_clusters`): lemon_clusters (k, default 16), lemon_mix (share of
             negatives drawn from the replaced entity's label cluster, default 0.5),
             lemon_encoder
Evaluators: `dict(split="validation"|"test", [budget=2**24 floats])`: filtered both-sides realistic
ranks, logged as `<split>/mrr`, `<split>/mr`, `<split>/hits@{1,3,10}`, `<split>/amri`.
Entity tables are named ("entity", "embed"): a rule ("entity", "fsdp") shards them by rows.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from jaxemb import functional
from jaxemb.data import kg, pipeline
from jaxemb.data.builders.kg_triples import default_data_dir
from jaxemb.evaluate import link_prediction
from jaxemb.nn import kge as kge_nn
from jaxemb.objectives import kge as kge_obj
from jaxemb.data import kg_clusters
from jaxemb.recipes.base import Recipe, TrainData, check_keys, evaluator_specs

MODEL_KEYS = frozenset({"interaction", "dim", "relation_dim", "p", "gamma", "dropout",
                        "row_axis"})
DATA_KEYS = frozenset({"graph", "data_dir", "triples_per_row"})
OBJECTIVE_KEYS = frozenset({"loss", "margin", "adversarial_temperature", "num_negatives",
                            "sampler", "regularizer_weight", "regularizer_p",
                            "regularizer_normalize", "negative_scoring", "training", "target",
                            "lemon_clusters", "lemon_mix", "lemon_encoder"})
EVALUATOR_KEYS = frozenset({"split", "budget"})
SAMPLERS = ("basic", "bernoulli", "lemon")
TRAINING = ("slcwa", "lcwa")
NEGATIVE_SCORING = ("auto", "gather", "matmul")


def use_matmul(mode: str, interaction: str, p: int, num_entities: int, num_negatives: int,
               dropout: bool) -> bool:
  """Whether negatives are scored by 1-N matrix products (then gathered) instead of gathering
  their rows: "auto" picks products when there are many negatives per triple relative to the
  entities (num_entities <= 8 * num_negatives), measured ~10x less CPU for RotatE on UMLS with
  32 negatives, and the interaction has a product form (not TransE L1, not TuckER with dropout
  or BatchNorm: `dropout` is `jaxemb.nn.kge.has_train_mode`)."""
  possible = not (interaction == "transe" and p == 1) and not dropout
  if mode == "matmul" and not possible:
    raise ValueError(f"objective.negative_scoring='matmul' is not available for "
                     f"{interaction} (p={p}, dropout={dropout}); use 'gather' or 'auto'")
  if mode == "auto":
    return possible and num_entities <= 8 * num_negatives
  return mode == "matmul"


def loss_options(objective: Mapping[str, Any]) -> dict[str, float]:
  """The options of `objective.loss` that its function takes (margin, temperature)."""
  name = objective["loss"]
  keys = {"margin_ranking": ("margin",), "nssa": ("margin", "adversarial_temperature")}
  return {k: float(objective[k]) for k in keys.get(name, ()) if k in objective}


class KGERecipe(Recipe):
  """sLCWA or LCWA training of a `jaxemb.nn.kge.KGEModel` on one graph."""

  config_keys = frozenset({"model", "data", "objective"})
  # The metrics a final before/after table should show (for `jaxemb train`'s summary).
  table_metrics = ("mrr", "hits@1", "hits@3", "hits@10", "mr", "amri")

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    for section, keys in (("model", MODEL_KEYS), ("data", DATA_KEYS),
                          ("objective", OBJECTIVE_KEYS)):
      if section not in config:
        raise ValueError(f"config.{section} is missing (keys: {sorted(keys)})")
      check_keys(section, config[section], keys)
    obj = config.objective
    self.training = obj.get("training", "slcwa")
    if self.training not in TRAINING:
      raise ValueError(f"config.objective.training={self.training!r} is not one of {TRAINING}")
    losses = kge_obj.SLCWA_LOSSES if self.training == "slcwa" else kge_obj.LCWA_LOSSES
    if obj.get("loss") not in losses:
      raise ValueError(f"config.objective.loss={obj.get('loss')!r} is not one of {losses} "
                       f"(training {self.training!r})")
    if obj.get("target", "tail") not in kg.LCWA_TARGETS:
      raise ValueError(f"config.objective.target={obj.get('target')!r} is not one of "
                       f"{kg.LCWA_TARGETS}")
    if obj.get("sampler", "basic") not in SAMPLERS:
      raise ValueError(f"config.objective.sampler={obj.get('sampler')!r} is not one of "
                       f"{SAMPLERS}")
    if int(obj.get("num_negatives", 1)) < 1:
      raise ValueError(f"config.objective.num_negatives must be >= 1, got {obj.num_negatives}")
    if obj.get("negative_scoring", "auto") not in NEGATIVE_SCORING:
      raise ValueError(f"config.objective.negative_scoring={obj.negative_scoring!r} is not one "
                       f"of {NEGATIVE_SCORING}")
    if config.model.get("interaction") not in kge_nn.INTERACTIONS:
      raise ValueError(f"config.model.interaction={config.model.get('interaction')!r} is not "
                       f"one of {kge_nn.INTERACTIONS}")
    self.graph = kg.load(config.data.graph, config.data.get("data_dir") or None)
    self.known = self.graph.all_triples()
    self.head_probability = None
    if obj.get("sampler", "basic") == "bernoulli":
      self.head_probability = kge_obj.bernoulli_head_probability(
          self.graph.train, self.graph.num_relations)
    self.clusters = None
    if obj.get("sampler", "basic") == "lemon":
      if not 0.0 <= float(obj.get("lemon_mix", 0.5)) <= 1.0:
        raise ValueError(f"config.objective.lemon_mix={obj.lemon_mix} is not in [0, 1]")
      assignment = kg_clusters.entity_clusters(
          self.graph.entities, int(obj.get("lemon_clusters", 16)),
          config.data.get("data_dir") or default_data_dir(),
          encoder=obj.get("lemon_encoder", "all-MiniLM-L6-v2"), seed=int(config.seed))
      self.clusters = kge_obj.cluster_tables(assignment)
    self._eval_fns = None
    train_mode = kge_nn.has_train_mode(
        config.model.interaction, config.model.get("dropout", kge_nn.TUCKER_DROPOUT),
        config.model.get("batch_norm", True))
    self.matmul_negatives = use_matmul(
        obj.get("negative_scoring", "auto"), config.model.interaction,
        int(config.model.get("p", 1)), self.graph.num_entities, int(obj.get("num_negatives", 1)),
        train_mode)

  # --- model, loss, data -----------------------------------------------------------------------

  def model(self, rngs: nnx.Rngs) -> kge_nn.KGEModel:
    return kge_nn.build(dict(self.config.model), self.graph.num_entities,
                        self.graph.num_relations, rngs)

  def loss(self, model, extra_params, batch, key):
    if self.training == "lcwa":
      return self._lcwa_loss(model, batch, key)
    obj = self.config.objective
    pos = batch["triple"].reshape(-1, 3)  # rows of `triples_per_row` triples -> [B, 3]
    corrupt_key, dropout_key = jax.random.split(key)
    k, n = int(obj.get("num_negatives", 1)), self.graph.num_entities
    if self.head_probability is not None:
      neg = kge_obj.corrupt_bernoulli(corrupt_key, pos, k, n, jnp.asarray(self.head_probability))
    elif self.clusters is not None:
      neg = kge_obj.corrupt_clustered(
          corrupt_key, pos, k, n, {name: jnp.asarray(v) for name, v in self.clusters.items()},
          float(obj.get("lemon_mix", 0.5)))
    else:
      neg = kge_obj.corrupt_basic(corrupt_key, pos, k, n)
    use_dropout = model.has_train_mode
    pos_key, neg_key = jax.random.split(dropout_key)
    pos_scores = model.score_hrt(pos[:, 0], pos[:, 1], pos[:, 2],
                                 dropout_key=pos_key if use_dropout else None)
    if self.matmul_negatives:
      # Every negative shares (r, t) or (h, r) with its positive: score the positive's query
      # against all entities by matrix products and pick the corrupted entity's column.
      tails = model.score_t_matmul(pos[:, 0], pos[:, 1])
      heads = model.score_h_matmul(pos[:, 1], pos[:, 2])
      head_corrupted = neg[..., 0] != pos[:, None, 0]  # corruption always changes the entity
      neg_scores = jnp.where(head_corrupted,
                             jnp.take_along_axis(heads, neg[..., 0], axis=1),
                             jnp.take_along_axis(tails, neg[..., 2], axis=1))
    else:
      neg_scores = model.score_hrt(neg[..., 0], neg[..., 1], neg[..., 2],
                                   dropout_key=neg_key if use_dropout else None)
    loss, metrics = kge_obj.slcwa_loss(obj.loss, pos_scores, neg_scores, **loss_options(obj))
    flat = neg.reshape(-1, 3)
    return self._regularize(loss, metrics, lambda: [
        *model.rows(pos[:, 0], pos[:, 1], pos[:, 2]),
        *model.rows(flat[:, 0], flat[:, 1], flat[:, 2])], model.dim)

  def _regularize(self, loss, metrics, rows, dim):
    """loss + weight * Lp(rows()) when `objective.regularizer_weight` is set."""
    obj = self.config.objective
    weight = float(obj.get("regularizer_weight", 0.0))
    if not weight:
      return loss, metrics
    reg = weight * kge_obj.lp_regularizer(
        rows(), p=float(obj.get("regularizer_p", 2.0)), dim=dim,
        normalize=bool(obj.get("regularizer_normalize", True)))
    loss = loss + reg
    return loss, {**metrics, "regularizer": reg, "loss": loss}

  def _lcwa_loss(self, model, batch, key):
    """1-N loss: each query `(side, entity, relation, answers...)` scored against every entity
    (side 0: tails of (entity, relation, ?); side 1: heads of (?, relation, entity)), labels
    multi-hot over its answers (PyKEEN's LCWA training loop)."""
    obj = self.config.objective
    q = batch["query"].reshape(-1, batch["query"].shape[-1])
    side, ent_id, rel_id, answers = q[:, 0], q[:, 1], q[:, 2], q[:, 3:]
    if model.has_train_mode:  # the matrix-product forms are evaluation-time scores
      tail_key, head_key = jax.random.split(key)
      tails = model.score_t(ent_id, rel_id, dropout_key=tail_key)
      heads = lambda: model.score_h(rel_id, ent_id, dropout_key=head_key)
    else:
      tails = model.score_t_matmul(ent_id, rel_id)
      heads = lambda: model.score_h_matmul(rel_id, ent_id)
    scores = tails if obj.get("target", "tail") == "tail" else jnp.where(
        side[:, None] == 0, tails, heads())
    labels = kge_obj.multi_hot(answers, self.graph.num_entities)
    loss, metrics = kge_obj.lcwa_loss(obj.loss, scores, labels)
    # PyKEEN's 1-N scoring looks up the query's entity and relation and the whole entity table.
    return self._regularize(loss, metrics, lambda: [
        *model.rows(ent_id, rel_id, ent_id)[:2], model.entity[...]], model.dim)

  def train_data(self) -> TrainData:
    """Rows of `data.triples_per_row` triples (sLCWA) or LCWA queries (see `kg.lcwa_queries`),
    shuffled by the source itself (per epoch, from the seed): the loop reads rows in order."""
    c = self.config
    chunk = int(c.data.get("triples_per_row", 1))
    if self.training == "lcwa":
      rows = kg.lcwa_queries(self.graph.train, c.objective.get("target", "tail"))
      source = functools.partial(pipeline.ShuffledChunks, key="query", width=rows.shape[1])
    else:
      rows, source = self.graph.train, kg.ShuffledChunks
    epochs = -(-c.total_steps * c.batch_size * chunk // len(rows)) + 1
    return TrainData(source(rows, chunk, seed=c.seed, epochs=epochs), shuffle=False)

  # --- optional ------------------------------------------------------------------------------

  def optimizer(self):
    """Adam at a constant learning rate (PyKEEN: torch Adam, no decay, no clipping)."""
    o = self.config.optim
    schedule = optax.constant_schedule(float(o.lr))
    tx = optax.adam(schedule, b1=float(o.get("b1", 0.9)), b2=float(o.get("b2", 0.999)),
                    eps=float(o.get("eps", 1e-8)))
    if o.get("weight_decay"):
      tx = optax.chain(optax.add_decayed_weights(float(o.weight_decay)), tx)
    if o.get("clip_norm"):
      tx = optax.chain(optax.clip_by_global_norm(float(o.clip_norm)), tx)
    return tx, schedule

  def post_update(self, params):
    interaction = self.config.model.interaction
    return {**params, "model": kge_nn.constrain(interaction, params["model"])}

  def evaluator(self, specs, mesh):
    specs = evaluator_specs(specs, EVALUATOR_KEYS)
    if not specs:
      return None
    for spec in specs:
      self.graph.split(spec.get("split", "validation"))  # validates the name

    def evaluate(model, step):
      del step
      graph, params = functional.split(model)
      # Training-time state (TuckER's running statistics) goes in as an argument, so the
      # cached jitted scorers see the current values.
      params = {"params": params, "state": functional.model_state(model)}
      if self._eval_fns is None:
        # Built once, so link_prediction's jit cache is hit at every later evaluation. Matrix
        # products where the interaction has them: a [Q, E] block then needs no [Q, E, width]
        # intermediate (the budget is divided by the width where it does).
        merge = lambda p: functional.merge(graph, p["params"], p["state"])
        if model.has_matmul:
          self._eval_fns = (lambda p, h, r: merge(p).score_t_matmul(h, r),
                            lambda p, r, t: merge(p).score_h_matmul(r, t), 1)
        else:
          self._eval_fns = (lambda p, h, r: merge(p).score_t(h, r),
                            lambda p, r, t: merge(p).score_h(r, t), model.entity[...].shape[1])
      score_t, score_h, width = self._eval_fns
      out = {}
      for spec in specs:
        split = spec.get("split", "validation")
        name = "validation" if split in ("valid", "validation") else split
        metrics = link_prediction.evaluate(
            score_t, score_h, params, self.graph.split(split), self.known,
            self.graph.num_entities, budget=max(1, int(spec.get("budget", 1 << 24)) // width))
        out.update({f"{name}/{k}": v for k, v in metrics.items()})
      return out

    return evaluate


RECIPE = KGERecipe
