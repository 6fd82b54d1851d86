"""Recipe `text_pairs`: a sentence embedder (encoder + pooling) trained on paired texts.

Batches hold "query_ids"/"query_mask" and "doc_ids"/"doc_mask" [B, L]; optional
"neg_ids"/"neg_mask" [B, K, L] (hard negatives), "score" [B] (CoSENT), "teacher" [B, D]
(distillation) and "doc_positions" [B, L] (PoSE positions for long-context tuning: with
`model.position_scaling="pi"`, `model.max_seq_length=N`, `data.pose_length=N` and
`optim.trainable=("model/encoder/embeddings/position",)` only the new position rows train).
With `pack_length=P` the texts arrive packed several to a row of P tokens instead
(`jaxemb.data.packing`): queries and documents together in "pair_packed_ids", "pair_segments",
"pair_unpack", "pair_mask" (one encoder pass; under GradCache one per chunk, each chunk's
pairs packed into its own rows); the encoder computes no padding and the embeddings are those
of the padded batch. The loss sees the global batch, so in-batch
negatives cross devices.

Config sections: `model` (pretrained weights or an encoder built from options, pooling,
tokenizer), `data` (a dataset of `jaxemb.data.registry`), `objective` (a loss of
`PAIR_LOSSES`), `gradcache_chunk` (> 0: exact full-batch gradients chunk by chunk),
`pack_length` (> 0: sequence packing into rows of that many tokens; `pack_rows_multiple`, default
8, rounds the number of rows so few shapes compile and rows divide over the devices).
Evaluators: `dict(task=NAME, split=..., [baseline=NAME], [data_dir=...], [batch_size=...])`
for a task of `jaxemb.tasks`, with `grid=dict(layers=..., dims=...)` for every (layer, dim)
size. Export: a sentence-transformers directory (`export_truncate_dim`: with `truncate_dim`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxemb import objectives, tasks
from jaxemb.objectives import elastic
from jaxemb.data import packing, registry as data_registry
from jaxemb.evaluate.registry import prefix_metrics
from jaxemb.recipes.base import Recipe, TrainData, check_keys, evaluator_specs

MODEL_KEYS = frozenset({"encoder", "encoder_options", "pooling", "pooling_options", "normalize",
                        "pretrained", "tokenizer", "dtype", "max_seq_length", "num_layers",
                        "position_scaling"})
OBJECTIVE_KEYS = frozenset({"name", "scale", "learnable_scale", "max_scale", "bias",
                            "symmetric", "label_smoothing", "dims", "weights",
                            "n_layers_per_step", "kl_weight", "kl_temperature",
                            "last_layer_weight", "prior_layers_weight", "layer_weighting",
                            "pairs", "renormalize", "full_weight"})
EVALUATOR_KEYS = frozenset({"task", "split", "baseline", "data_dir", "batch_size", "grid"})


# ---------------------------------------------------------------------------------------------
# Losses: (query emb, doc emb, batch, extra params, negatives) -> (loss, metrics), one table.
# ---------------------------------------------------------------------------------------------

def _scale(config: Mapping[str, Any], extra: dict):
  if "log_scale" in extra:
    return objectives.scale_from_log(extra["log_scale"], config.get("max_scale", 100.0))
  return config.get("scale", 20.0)


PAIR_LOSSES: dict[str, Callable] = {
    "info_nce": lambda c, q, d, batch, extra, negatives: objectives.info_nce(
        q, d, scale=_scale(c, extra), hard_negatives=negatives,
        symmetric=c.get("symmetric", True), label_smoothing=c.get("label_smoothing", 0.0)),
    "sigmoid": lambda c, q, d, batch, extra, negatives: objectives.sigmoid_loss(
        q, d, scale=_scale(c, extra), bias=extra.get("bias", c.get("bias", -10.0))),
    "cosent": lambda c, q, d, batch, extra, negatives: objectives.cosent(
        q, d, batch["score"], scale=c.get("scale", 20.0)),
    "mse_distillation": lambda c, q, d, batch, extra, negatives: objectives.mse_distillation(
        q, batch["teacher"]),
    # InfoNCE on every nested prefix `objective.dims` of the embedding (each re-normalised),
    # weighted by `objective.weights`; works on GradCache's cached embeddings too.
    "matryoshka": lambda c, q, d, batch, extra, negatives: elastic.matryoshka(
        functools.partial(objectives.info_nce, scale=_scale(c, extra),
                          symmetric=c.get("symmetric", True),
                          label_smoothing=c.get("label_smoothing", 0.0)),
        q, d, tuple(c["dims"]), tuple(c.get("weights") or ()) or None,
        hard_negatives=negatives),
}

# Losses over per-layer pooled embeddings `[L + 1, B, D]` (`nn.embedder.layer_embeddings`):
# (config, q_layers, d_layers, extra, negative layers [L + 1, B, K, D] or None, step key).
LAYER_LOSSES: dict[str, Callable] = {
    # 2DMSE as sentence-transformers' Matryoshka2dLoss: the last layer and one sampled prior
    # layer per step (objective.n_layers_per_step), each at a sampled size of objective.dims,
    # plus the KL alignment to the last layer (objective.kl_weight, kl_temperature 0.3).
    "2dmse": lambda c, q, d, extra, negatives, key: elastic.two_d_matryoshka(
        functools.partial(objectives.info_nce, scale=_scale(c, extra),
                          symmetric=c.get("symmetric", True),
                          label_smoothing=c.get("label_smoothing", 0.0)),
        q, d, tuple(c["dims"]), key, tuple(c.get("weights") or ()) or None,
        n_layers_per_step=c.get("n_layers_per_step", 1),
        last_layer_weight=c.get("last_layer_weight", 1.0),
        prior_layers_weight=c.get("prior_layers_weight", 1.0),
        kl_weight=c.get("kl_weight", 1.0), kl_temperature=c.get("kl_temperature", 0.3),
        layer_weighting=c.get("layer_weighting", "linear")),
    # Starbucks: every (layer, dim) of objective.pairs every step, CE plus KL to the full
    # model's detached in-batch scores (objective.kl_weight, full-size CE weighted by
    # objective.full_weight); default pairs: MiniLM's.
    "starbucks": lambda c, q, d, extra, negatives, key: elastic.starbucks(
        q, d, tuple(tuple(p) for p in (c.get("pairs") or elastic.MINILM_PAIRS)),
        scale=_scale(c, extra), kl_weight=c.get("kl_weight", 1.0),
        full_weight=c.get("full_weight", 1.0), hard_negatives=negatives,
        symmetric=c.get("symmetric", False), renormalize=c.get("renormalize", True)),
}
# Losses that use hard negatives; the others would silently ignore "neg_ids".
TAKES_NEGATIVES = frozenset({"info_nce", "matryoshka", "starbucks"})


def pair_loss(config: Mapping[str, Any]) -> Callable:
  """`loss(q, d, batch, extra, negatives) -> (loss, metrics)` for `config["name"]`."""
  name = config.get("name")
  if name not in PAIR_LOSSES and name not in LAYER_LOSSES:
    raise ValueError(f"unknown objective {name!r} for recipe text_pairs; valid: "
                     f"{sorted({**PAIR_LOSSES, **LAYER_LOSSES})}")
  if name in ("matryoshka", "2dmse") and not config.get("dims"):
    raise ValueError(f"objective {name!r} needs objective.dims (nested prefix sizes, e.g. "
                     "(384, 256, 128, 64, 32))")
  if name in LAYER_LOSSES:
    fn = LAYER_LOSSES[name]
    return lambda q, d, batch, extra, negatives=None, key=None: fn(config, q, d, extra,
                                                                  negatives, key)
  fn = PAIR_LOSSES[name]
  return lambda q, d, batch, extra, negatives=None: fn(config, q, d, batch, extra, negatives)


def objective_params(config: Mapping[str, Any]) -> dict[str, jax.Array]:
  """Trainable parameters of the objective (learnable temperature / SigLIP bias)."""
  params = {}
  if config.get("learnable_scale"):
    params["log_scale"] = jnp.log(jnp.float32(config.get("scale", 20.0)))
  if config["name"] == "sigmoid" and config.get("learnable_scale"):
    params["bias"] = jnp.float32(config.get("bias", -10.0))
  return params


# ---------------------------------------------------------------------------------------------
# The recipe.
# ---------------------------------------------------------------------------------------------

def load_text_model(model_config: Mapping[str, Any]):
  """(EmbeddingModel with pretrained weights or None, EmbeddingModel lending the tokenizer).

  `model.pretrained` loads weights and tokenizer; otherwise `model.tokenizer` (a model name or
  directory) only lends its tokenizer, limits and pad id to a randomly initialised encoder.
  """
  from jaxemb.pretrained.sentence_transformers import load_pretrained
  max_len = model_config.get("max_seq_length") or None
  scaling = model_config.get("position_scaling") or None
  if model_config.get("pretrained"):
    pretrained = load_pretrained(model_config["pretrained"],
                                 dtype=model_config.get("dtype", "float32"),
                                 max_seq_length=None if scaling else max_len)
    if scaling:  # long context: positions extended to max_seq_length (jaxemb.long_context)
      from jaxemb import long_context
      if scaling == "pcw" or max_len is None:
        raise ValueError(f"model.position_scaling={scaling!r} needs model.max_seq_length and "
                         "a method that changes the model (gp, rp, pi; pcw is a way to encode)")
      pretrained = long_context.extend(pretrained, int(max_len), scaling)
    return pretrained, pretrained
  if scaling:
    raise ValueError("model.position_scaling needs model.pretrained (it extends a trained "
                     "encoder's positions)")
  if not model_config.get("tokenizer"):
    return None, None
  lender = load_pretrained(model_config["tokenizer"], max_seq_length=max_len)
  vocab = lender.tokenizer.get_vocab_size()
  options = model_config.get("encoder_options") or {}
  if options.get("vocab_size", vocab) < vocab:
    raise ValueError(f"model.encoder_options.vocab_size={options['vocab_size']} is smaller "
                     f"than the {vocab} tokens of tokenizer {model_config['tokenizer']!r}")
  return None, lender


def side_arrays(batch: Mapping[str, jax.Array], side: str) -> dict[str, jax.Array]:
  """A batch's "query" or "doc" arrays without the prefix: ids, mask, [positions], or
  packed_ids, segments, unpack and mask."""
  return {key[len(side) + 1:]: value for key, value in batch.items()
          if key.startswith(f"{side}_")}


def embed_arrays(model, arrays: Mapping[str, jax.Array]) -> jax.Array:
  """Training-mode embeddings `[B, D]` of one side's `side_arrays`: packed rows when given,
  else the padded ids (with explicit PoSE positions when given)."""
  if "packed_ids" in arrays:
    return model.embed_packed(arrays["packed_ids"], arrays["segments"], arrays["unpack"],
                              arrays["mask"], deterministic=False)
  kwargs = {"position_ids": arrays["positions"]} if "positions" in arrays else {}
  return model(arrays["ids"], arrays["mask"], deterministic=False, **kwargs)


def embed_side(model, batch: Mapping[str, jax.Array], side: str) -> jax.Array:
  """`embed_arrays` of a batch's "query" or "doc" side."""
  return embed_arrays(model, side_arrays(batch, side))


def embed_pair(model, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array | None]:
  """Training-mode (query, document) embeddings `[B, D]` of a batch (document None when the
  batch has none); queries and documents packed into the same rows ("pair_*") are encoded in
  one pass."""
  if "pair_packed_ids" in batch:
    both = embed_side(model, batch, "pair")
    return both[:both.shape[0] // 2], both[both.shape[0] // 2:]
  doc = "doc_mask" in batch
  return embed_side(model, batch, "query"), embed_side(model, batch, "doc") if doc else None


class TextPairs(Recipe):
  """Contrastive (or regression/distillation) training of a `SentenceEmbedder`."""

  config_keys = frozenset({"model", "data", "objective", "gradcache_chunk",
                           "export_truncate_dim", "pack_length", "pack_rows_multiple"})
  table_metrics = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100")

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    check_keys("model", config.model, MODEL_KEYS)
    check_keys("objective", config.objective, OBJECTIVE_KEYS)
    self._loss = pair_loss(config.objective)
    self.gradcache_chunk = int(config.get("gradcache_chunk", 0) or 0)
    if self.gradcache_chunk and config.get("microbatches", 1) > 1:
      raise ValueError("choose microbatches or gradcache_chunk, not both")
    self.by_layer = config.objective.name in LAYER_LOSSES
    if self.gradcache_chunk and self.by_layer:
      raise ValueError(f"gradcache_chunk does not support objective "
                       f"{config.objective.name!r} (it needs every layer's embeddings)")
    if self.gradcache_chunk and objective_params(config.objective):
      raise ValueError("gradcache_chunk does not support a learnable scale "
                       "(objective.learnable_scale=True)")
    self.pack_length = int(config.get("pack_length", 0) or 0)
    self.pack_rows_multiple = int(config.get("pack_rows_multiple", 0) or packing.ROWS_MULTIPLE)
    if self.pack_length:
      unsupported = {"a per-layer objective "
                     f"({config.objective.name!r})": self.by_layer,
                     "data.pose_length": config.data.get("pose_length"),
                     "microbatches": config.get("microbatches", 1) > 1,
                     "model.position_scaling": config.model.get("position_scaling"),
                     f"encoder {config.model.get('encoder')!r} (packing needs a transformer)":
                     not config.model.get("pretrained")
                     and config.model.get("encoder") != "transformer"}
      named = [k for k, v in unsupported.items() if v]
      if named:
        raise ValueError(f"pack_length={self.pack_length} does not combine with "
                         f"{', '.join(named)}; set pack_length=0")
      if jax.process_count() > 1:
        raise ValueError("pack_length packs each process's rows on its own; multi-process "
                         "training needs pack_length=0")
    m = config.model
    if config.get("export") and not m.get("pretrained") and m.get("encoder") != "transformer":
      raise ValueError(f"config.export is set but encoder {m.get('encoder')!r} has no "
                       "sentence-transformers format; set export=False")
    self.pretrained, self.text_model = load_text_model(m)
    if self.pretrained is not None:
      self._pretrained_split = nnx.split(self.pretrained.module)
    # Position interpolation keeps the trained rows at i * s (short inputs read them): they stay
    # fixed when the new rows are tuned (`post_update`).
    self._trained_position_rows = None
    if m.get("position_scaling") == "pi" and self.pretrained is not None:
      cfg = self.pretrained.module.encoder.cfg
      if cfg.position_embedding == "absolute":
        table = self.pretrained.module.encoder.embeddings.position.embedding[...]
        factor = cfg.position_scaling_factor
        self._trained_position_rows = (factor, np.asarray(table[::factor]))

  # --- model and loss -------------------------------------------------------------------------

  def model(self, rngs: nnx.Rngs) -> nnx.Module:
    if self.pretrained is not None:
      # Host weights, the same for every key; model.pooling / model.num_layers edit them.
      from jaxemb.nn.surgery import adapt_pretrained
      return adapt_pretrained(nnx.merge(*self._pretrained_split), self.config.model, rngs)
    from jaxemb.nn.build import build_embedder
    m = self.config.model
    # model.dtype is the compute dtype; encoder_options.dtype wins if given.
    options = {"dtype": m.get("dtype", "float32"), **dict(m.get("encoder_options") or {})}
    return build_embedder(m.encoder, options, pooling=m.get("pooling", "mean"),
                          pooling_options=dict(m.get("pooling_options") or {}),
                          normalize=m.get("normalize", True), rngs=rngs)

  def extra_params(self) -> dict[str, jax.Array]:
    return objective_params(self.config.objective)

  def post_update(self, params):
    """Under `model.position_scaling="pi"` the trained position rows (i * s) are put back, so
    only the interpolated rows move and inputs within the trained length embed as before."""
    if self._trained_position_rows is None:
      return params
    factor, rows = self._trained_position_rows
    model = params["model"]
    embeddings = model["encoder"]["embeddings"]
    table = embeddings["position"]["embedding"]
    table = table.at[::factor].set(jnp.asarray(rows, table.dtype))
    embeddings = {**embeddings, "position": {**embeddings["position"], "embedding": table}}
    return {**params, "model": {**model, "encoder": {**model["encoder"],
                                                     "embeddings": embeddings}}}

  def loss(self, model, extra_params, batch, key):
    if self.by_layer:
      return self._layer_loss(model, extra_params, batch, key)
    q, d = embed_pair(model, batch)
    negatives = self._negatives(lambda ids, mask: model(ids, mask, deterministic=False), batch)
    loss, metrics = self._loss(q, d, batch, extra_params, negatives)
    if "log_scale" in extra_params:
      metrics = {**metrics, "scale": jnp.exp(extra_params["log_scale"])}
    return loss, metrics

  def _layer_loss(self, model, extra_params, batch, key):
    """A `LAYER_LOSSES` objective on every layer's pooled embeddings (one pass per side)."""
    if "doc_positions" in batch:
      raise ValueError(f"objective {self.config.objective.name!r} does not take explicit "
                       "document positions (data.pose_length)")
    from jaxemb.nn.embedder import layer_embeddings
    embed = lambda ids, mask: layer_embeddings(model, ids, mask, deterministic=False)
    q = embed(batch["query_ids"], batch["query_mask"])
    negatives = self._negatives(embed, batch)
    d = embed(batch["doc_ids"], batch["doc_mask"])
    return self._loss(q, d, batch, extra_params, negatives, key)

  def _negatives(self, embed, batch):
    """`embed(ids, mask)` of the batch's hard negatives as `[..., B, K, D]`; None if none."""
    if "neg_ids" not in batch:
      return None
    if self.config.objective.name not in TAKES_NEGATIVES:
      raise ValueError(f"objective {self.config.objective.name!r} does not use hard "
                       f"negatives, but the batch has 'neg_ids'; use one of "
                       f"{sorted(TAKES_NEGATIVES)}")
    b, k, l = batch["neg_ids"].shape
    out = embed(batch["neg_ids"].reshape(b * k, l), batch["neg_mask"].reshape(b * k, l))
    return out.reshape(*out.shape[:-2], b, k, out.shape[-1])

  def value_and_grad(self, graph, loss_fn, params, batch, key):
    if not self.gradcache_chunk:
      return super().value_and_grad(graph, loss_fn, params, batch, key)
    if "neg_ids" in batch or "doc_positions" in batch:
      raise ValueError("gradcache_chunk does not support hard negatives ('neg_ids') or "
                       "explicit document positions (data.pose_length)")
    pair = "pair_packed_ids" in batch
    b = batch["pair_mask"].shape[0] // 2 if pair else batch["query_mask"].shape[0]
    q_key, d_key = jax.random.split(key)
    per_example = lambda k, n: jax.random.key_data(jax.random.split(k, n))

    def embed(model_params, chunk):
      model = graph.merge(model_params)
      nnx.reseed(model, default=jax.random.wrap_key_data(chunk["rng"][0]))
      return embed_arrays(model, chunk)

    contrastive = lambda q, d: self._loss(q, d, batch, params["extra"])
    if pair:
      # Queries and documents packed into each chunk's rows (`pack(..., chunks=)` on both
      # sides): one embedding pass per chunk, split back into the two sides for the loss.
      both = side_arrays(batch, "pair") | {"rng": per_example(q_key, 2 * b)}
      (loss, metrics), grads = objectives.chunked_value_and_grad(
          embed, params["model"], {"pair_batch": both}, chunk_size=2 * self.gradcache_chunk,
          num_texts=(2 * b,), loss_fn=lambda emb: contrastive(emb[:b], emb[b:]))
      return (loss, metrics), {"model": grads, "extra": {}}
    # packed rows come laid out per chunk by the packing transform (`pack(..., chunks=)`)
    side = lambda name, k: side_arrays(batch, name) | {"rng": per_example(k, b)}
    (loss, metrics), grads = objectives.chunked_contrastive_value_and_grad(
        embed, params["model"], side("query", q_key), side("doc", d_key),
        chunk_size=self.gradcache_chunk, num_texts=(b, b), loss_fn=contrastive)
    return (loss, metrics), {"model": grads, "extra": {}}

  # --- data -----------------------------------------------------------------------------------

  def train_data(self) -> TrainData:
    source, transform = data_registry.make_dataset(self.config.data, self.text_model)
    if self.pack_length:
      pad_id = self.text_model.pad_token_id if self.text_model is not None else 0
      chunks = self.config.batch_size // self.gradcache_chunk if self.gradcache_chunk else 1
      transform = packing.packed_transform(transform, self.pack_length,
                                           self.pack_rows_multiple, pad_id, chunks=chunks)
    return TrainData(source, transform)

  # --- evaluation and export ------------------------------------------------------------------

  def embedding_model(self, module: nnx.Module, name: str = ""):
    """The module bundled with the tokenizer (an `EmbeddingModel` for `jaxemb.encode`)."""
    from jaxemb.model import EmbeddingModel
    if self.text_model is None:
      raise ValueError("text evaluation and export need a tokenizer: set "
                       "config.model.pretrained or config.model.tokenizer")
    return EmbeddingModel(module, self.text_model.tokenizer, self.text_model.max_seq_length,
                          name=name, encoder_config=self.text_model.encoder_config)

  def evaluator(self, specs, mesh):
    return text_evaluator(specs, self.text_model, mesh)

  def export(self, module, directory):
    from jaxemb.nn.transformer import TransformerEncoder
    from jaxemb.pretrained.sentence_transformers import save_pretrained
    if not isinstance(module.encoder, TransformerEncoder):
      raise ValueError(f"config.export: a {type(module.encoder).__name__} has no "
                       "sentence-transformers format; only transformer encoders export")
    # export_truncate_dim > 0: the directory says `truncate_dim` (sentence-transformers and
    # `jaxemb.load_pretrained` then encode to that many dims).
    truncate_dim = int(self.config.get("export_truncate_dim", 0) or 0) or None
    if jax.process_index() == 0:
      save_pretrained(self.embedding_model(module, name=directory), directory,
                      truncate_dim=truncate_dim)
    return directory


def text_evaluator(specs, text_model, mesh=None) -> Callable | None:
  """`evaluate(module, step)` running each spec's task (or baseline) of `jaxemb.tasks`.

  A spec is `dict(task=NAME, split=..., [baseline=NAME], [data_dir=...], [batch_size=64])`;
  metrics are logged as `<split>/<metric>`, a baseline's as `<split>_<baseline>/<metric>`
  (computed once: it does not change during training). `text_model` lends the tokenizer;
  `mesh` (the training mesh) is where `encode` runs, so the parameters are not moved.
  """
  specs = evaluator_specs(specs, EVALUATOR_KEYS)
  if not specs:
    return None
  plans = []
  for spec in specs:
    if "task" not in spec:
      raise ValueError(f"evaluator {spec} names no task; known tasks: {tasks.list_tasks()}")
    task = tasks.get(spec["task"])
    if spec.get("baseline") and spec["baseline"] not in task.baselines:
      raise ValueError(f"task {task.name!r} has no baseline {spec['baseline']!r}; it has "
                       f"{sorted(task.baselines) or 'none'}")
    if spec.get("grid") is not None:
      check_grid(spec["grid"])
    plans.append((task, spec.get("split", "validation"), spec))
  if any(not spec.get("baseline") for _, _, spec in plans) and text_model is None:
    raise ValueError("text evaluators need a tokenizer: set config.model.pretrained or "
                     "config.model.tokenizer")
  baseline_cache: dict[int, dict] = {}

  def evaluate(module, step):
    from jaxemb.encoding import encode
    from jaxemb.model import EmbeddingModel
    out = {}
    for i, (task, split, spec) in enumerate(plans):
      data_dir = spec.get("data_dir") or None
      if spec.get("baseline"):
        if i not in baseline_cache:
          baseline_cache[i] = prefix_metrics(
              f"{split}_{spec['baseline']}",
              tasks.baseline(task, spec["baseline"], split, data_dir))
        out.update(baseline_cache[i])
        continue
      model = EmbeddingModel(module, text_model.tokenizer, text_model.max_seq_length)
      embed = lambda texts, layer=None: encode(model, texts, layer=layer, mesh=mesh,
                                               batch_size=spec.get("batch_size", 64),
                                               show_progress=False)
      if spec.get("grid") is not None:
        out.update(grid_metrics(task, split, embed, spec["grid"], module, data_dir))
        continue
      out.update(prefix_metrics(split, tasks.evaluate(task, split, embed, data_dir)))
    return out

  return evaluate


def check_grid(grid: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(layers, dims) of an evaluator's `grid=dict(layers=..., dims=...)`; ValueError if bad."""
  if not isinstance(grid, Mapping) or set(grid) != {"layers", "dims"}:
    raise ValueError(f"evaluator grid={grid!r}; expected dict(layers=(...), dims=(...))")
  out = []
  for name in ("layers", "dims"):
    values = tuple(grid[name])
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                             for v in values):
      raise ValueError(f"evaluator grid {name}={grid[name]!r}; expected positive ints")
    out.append(values)
  return out[0], out[1]


def grid_metrics(task, split: str, embed: Callable, grid: Mapping[str, Any], module,
                 data_dir: str | None = None) -> dict[str, float]:
  """`task`'s metrics at every (layer, dim) of `grid`, as `<split>/L<layer>_d<dim>/<metric>`.

  `embed(texts, layer)` returns normalised full-width embeddings of that layer; each text list
  is encoded once per layer and truncated per dim (then re-normalised: the same vectors as
  `encode(..., layer=l, truncate_dim=d)`, since a row's scale does not change its direction).
  """
  import numpy as np
  from jaxemb.objectives.elastic import truncate_normalize
  layers, dims = check_grid(grid)
  for layer in layers:
    for dim in dims:
      module.check_size(layer, dim)
  out = {}
  for layer in layers:
    cache: dict[tuple[str, ...], np.ndarray] = {}

    def full(texts, layer=layer, cache=cache):
      key = tuple(texts)
      if key not in cache:
        cache[key] = np.asarray(embed(list(texts), layer))
      return cache[key]

    for dim in dims:
      at_size = lambda texts, dim=dim, full=full: np.asarray(
          truncate_normalize(full(texts), dim))
      out.update(prefix_metrics(f"{split}/L{layer}_d{dim}",
                                tasks.evaluate(task, split, at_size, data_dir)))
  return out


RECIPE = TextPairs
