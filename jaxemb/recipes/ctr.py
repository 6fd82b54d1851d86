"""Recipe `ctr`: click-through-rate prediction with a DLRM over compressed embedding tables.

Batches hold "dense" [B, 13] counts, "sparse" [B, 26] ids and "label" [B]; the loss is binary
cross-entropy (OptEmbed's supernet also samples per-field dims from the step key and adds its
threshold regulariser). Data: the `synthetic_ctr` TFDS builder (a named config, optionally with
`CTRSpec` overrides), read once into memory.

Config sections:
  model: table ("full", "hashed", "qr", "unified", "optembed"), dim, budget (fraction of the full
    tables' parameters), num_hashes (hashed), probes (unified: int or per-feature list),
    qr_combine, bottom / top (MLP hidden sizes), row_axis (mesh axis of table rows, "" = none),
    optembed_dims / optembed_keep (OptEmbed retrain: per-field dims and a .npy row mask from
    `optembed_search`; empty = the supernet stage), threshold_init, optembed_stages (True: the
    three stages in sequence, `run_optembed_stages`; `jaxemb train` calls it through
    `CTR.drive`), optembed_population / optembed_generations (that search's size).
  data: builder (a `synthetic_ctr.CONFIGS` name), spec (CTRSpec overrides), data_dir.
  objective: table_optimizer ("adamw" as the rest, or "rowwise_adagrad"), table_lr,
    optembed_reg (weight of OptEmbed's threshold regulariser).
Evaluators: `dict(split="test", [batch_size=4096])` -> "<split>/auc", "<split>/logloss",
"<split>/oracle_auc" (the teacher's probabilities on the same rows) and "params/embedding".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxemb import functional
from jaxemb.data import ctr as ctr_data
from jaxemb.evaluate import ctr as ctr_metrics
from jaxemb.nn import tables as tables_lib
from jaxemb.nn.ctr import DLRM, bce_with_logits
from jaxemb.optimizers import rowwise
from jaxemb.recipes.base import Recipe, TrainData, check_keys, evaluator_specs

TABLES = ("full", "hashed", "qr", "unified", "optembed")
MODEL_KEYS = frozenset({"table", "dim", "budget", "init_std", "num_hashes", "probes",
                        "qr_combine", "bottom", "top", "row_axis", "optembed_dims",
                        "optembed_keep", "threshold_init", "pad_rows_to", "optembed_stages",
                        "optembed_population", "optembed_generations"})
DATA_KEYS = frozenset({"builder", "spec", "data_dir"})
OBJECTIVE_KEYS = frozenset({"table_optimizer", "table_lr", "optembed_reg"})
EVALUATOR_KEYS = frozenset({"split", "batch_size"})


# ---------------------------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------------------------

class ArraySource:
  """Random-access rows of a dict of equal-length numpy arrays (`len`, `[i]`)."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self.arrays = dict(arrays)
    lengths = {len(v) for v in self.arrays.values()}
    if len(lengths) != 1:
      raise ValueError(f"arrays must have one length, got {lengths}")
    self._n = lengths.pop()

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in self.arrays.items()}


def data_spec(data_config: Mapping[str, Any]) -> tuple[str, ctr_data.CTRSpec]:
  """(builder config name, CTRSpec): a named config, or a derived one when `spec` overrides it."""
  from jaxemb.data.builders import synthetic_ctr
  name = data_config.get("builder", "ci")
  spec = synthetic_ctr.spec(name)
  overrides = dict(data_config.get("spec") or {})
  if overrides:
    bad = sorted(set(overrides) - {f.name for f in dataclasses.fields(spec)})
    if bad:
      raise ValueError(f"unknown data.spec key(s) {bad}; valid: "
                       f"{[f.name for f in dataclasses.fields(spec)]}")
    spec = dataclasses.replace(spec, **overrides)
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    name = f"{name}_{digest.hexdigest()[:10]}"
  return name, spec


_SPLIT_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def load_split(data_config: Mapping[str, Any], split: str) -> dict[str, np.ndarray]:
  """One split of the configured synthetic_ctr data set as numpy arrays (built on first use;
  kept in memory for the process, so a sweep of runs decodes each split once)."""
  from jaxemb.data.builders import synthetic_ctr
  name, spec = data_spec(data_config)
  data_dir = data_config.get("data_dir") or synthetic_ctr.default_data_dir()
  key = (name, os.path.abspath(data_dir), split)
  if key not in _SPLIT_CACHE:
    _SPLIT_CACHE[key] = _read_split(name, spec, data_dir, split)
  return _SPLIT_CACHE[key]


def _read_split(name: str, spec: ctr_data.CTRSpec, data_dir: str,
                split: str) -> dict[str, np.ndarray]:
  from jaxemb.data.builders import prepare, synthetic_ctr
  config = (synthetic_ctr.CONFIGS[name] if name in synthetic_ctr.CONFIGS
            else synthetic_ctr.make_config(name, **dataclasses.asdict(spec)))
  builder = prepare(synthetic_ctr.SyntheticCtr(config=config, data_dir=data_dir,
                                               file_format="array_record"))
  src = builder.as_data_source(split)
  rows = []
  for lo in range(0, len(src), 8192):
    rows.extend(src.__getitems__(list(range(lo, min(lo + 8192, len(src))))))
  # the builder stores examples in a hashed order: sort back by index so reads are reproducible
  order = np.argsort([r["index"] for r in rows])
  return {k: np.stack([np.asarray(rows[i][k]) for i in order])
          for k in ("dense", "sparse", "label", "prob")}


# ---------------------------------------------------------------------------------------------
# Tables at a parameter budget.
# ---------------------------------------------------------------------------------------------

def qr_buckets(cards: Sequence[int], budget: float) -> np.ndarray:
  """Remainder buckets m_f so that quotient + remainder rows ~ the water-filled row budget of
  `tables.budget_rows` (features under the cap stay whole: m = card); QR cannot go below
  ~2 sqrt(card) rows."""
  cards = np.asarray(cards, np.int64)
  target = tables_lib.budget_rows(cards, budget).astype(np.float64)
  # m + c / m = T: the larger root; below T = 2 sqrt(c) use sqrt(c)
  disc = np.maximum(target ** 2 - 4.0 * cards, 0.0)
  m = np.floor((target + np.sqrt(disc)) / 2.0).astype(np.int64)
  m = np.maximum(m, np.ceil(np.sqrt(cards)).astype(np.int64))
  return np.where(target >= cards, cards, np.clip(m, 1, cards))


def make_tables(model_config: Mapping[str, Any], cards: Sequence[int],
                rngs: nnx.Rngs) -> nnx.Module:
  """The table of `model.table` at `model.budget` of the full tables' parameters.

  Rows are padded to a multiple of `model.pad_rows_to` (default 64), a constant rather than the
  device count, so parameter shapes (and their random init) do not depend on the mesh.
  """
  kind = model_config.get("table", "full")
  dim = int(model_config.get("dim", 16))
  budget = float(model_config.get("budget", 1.0))
  if not 0 < budget <= 1:
    raise ValueError(f"model.budget must be in (0, 1], got {budget}")
  row_axis = model_config.get("row_axis") or None
  # init_std 0: each table's own default (about unit-norm embeddings)
  common = dict(rngs=rngs, row_axis=row_axis,
                pad_rows_to=int(model_config.get("pad_rows_to", 64)),
                std=float(model_config.get("init_std", 0.0)) or None)
  if kind == "full":
    # full tables under a budget: the same tables, narrower (dim * budget)
    return tables_lib.FullTables(cards, max(1, round(dim * budget)), **common)
  if kind == "hashed":
    return tables_lib.HashedTables(cards, dim, tables_lib.budget_rows(cards, budget),
                                   num_hashes=int(model_config.get("num_hashes", 2)), **common)
  if kind == "qr":
    return tables_lib.QRTables(cards, dim, qr_buckets(cards, budget),
                               combine=model_config.get("qr_combine", "mult"), **common)
  if kind == "unified":
    probes = model_config.get("probes", 2)
    probes = list(probes) if not np.isscalar(probes) else int(probes)
    width = dim // int(np.max(probes))
    rows = max(1, round(budget * sum(cards) * dim / width))
    return tables_lib.UnifiedTables(cards, dim, rows, probes=probes, **common)
  if kind == "optembed":
    dims = list(model_config.get("optembed_dims") or []) or None
    keep_path = model_config.get("optembed_keep") or ""
    keep = np.load(keep_path) if keep_path else None
    if (dims is None) != (keep is None):
      raise ValueError("model.optembed_dims and model.optembed_keep go together (retrain); "
                       f"got dims={dims}, keep={keep_path!r}")
    return tables_lib.OptEmbedTables(cards, dim, dims=dims, keep_rows=keep,
                                     threshold_init=float(model_config.get("threshold_init", 0.0)),
                                     **common)
  raise ValueError(f"unknown model.table {kind!r}; valid: {list(TABLES)}")


# ---------------------------------------------------------------------------------------------
# Evaluation.
# ---------------------------------------------------------------------------------------------

@jax.jit
def _logits(graph: functional.Graph, params: Any, dense: jax.Array, sparse: jax.Array):
  return functional.apply(graph, params, {"dense": dense, "sparse": sparse})


def predict(model: nnx.Module, dense: np.ndarray, sparse: np.ndarray,
            batch_size: int = 4096) -> np.ndarray:
  """Logits [N] in batches of `batch_size` (the last one padded, so one shape compiles)."""
  graph, params = functional.split(model)
  out = []
  for lo in range(0, len(dense), batch_size):
    d, s = dense[lo:lo + batch_size], sparse[lo:lo + batch_size]
    n = len(d)
    if n < batch_size:
      d = np.concatenate([d, np.zeros((batch_size - n,) + d.shape[1:], d.dtype)])
      s = np.concatenate([s, np.zeros((batch_size - n,) + s.shape[1:], s.dtype)])
    out.append(np.asarray(_logits(graph, params, d, s))[:n])
  return np.concatenate(out)


def ctr_metrics_of(labels: np.ndarray, logits: np.ndarray, prob: np.ndarray | None,
                   prefix: str) -> dict[str, float]:
  """"<prefix>/auc", "/logloss" and (with teacher probabilities) "/oracle_auc"."""
  out = {f"{prefix}/auc": ctr_metrics.auc(labels, logits),
         f"{prefix}/logloss": ctr_metrics.log_loss_from_logits(labels, logits)}
  if prob is not None:
    out[f"{prefix}/oracle_auc"] = ctr_metrics.auc(labels, prob)
  return out


# ---------------------------------------------------------------------------------------------
# The recipe.
# ---------------------------------------------------------------------------------------------

class CTR(Recipe):
  """DLRM over a (compressed) embedding table, trained with BCE on synthetic Criteo data."""

  config_keys = frozenset({"model", "data", "objective"})
  table_metrics = ("auc", "logloss", "oracle_auc")

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    check_keys("model", config.model, MODEL_KEYS)
    check_keys("data", config.data, DATA_KEYS)
    check_keys("objective", config.objective, OBJECTIVE_KEYS)
    if config.model.get("table", "full") not in TABLES:
      raise ValueError(f"unknown model.table {config.model.get('table')!r}; "
                       f"valid: {list(TABLES)}")
    if config.objective.get("table_optimizer", "adamw") not in ("adamw", "rowwise_adagrad"):
      raise ValueError(f"objective.table_optimizer must be 'adamw' or 'rowwise_adagrad', got "
                       f"{config.objective.get('table_optimizer')!r}")
    if config.model.get("optembed_stages"):
      raise ValueError("model.optembed_stages=True is three runs of the loop (supernet, search, "
                       "retrain): run it with `jaxemb train` or "
                       "jaxemb.recipes.ctr.run_optembed_stages(config, workdir)")
    self.builder, self.spec = data_spec(config.data)
    self.cards = self.spec.cardinalities
    self.kind = config.model.get("table", "full")
    self.supernet = self.kind == "optembed" and not config.model.get("optembed_dims")
    self._splits: dict[str, dict[str, np.ndarray]] = {}

  @staticmethod
  def drive(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
    """`jaxemb train`'s hook for a config that is several loop runs: OptEmbed's stages when
    `model.optembed_stages`, else None (one run of the loop)."""
    if config.model.get("table") == "optembed" and config.model.get("optembed_stages"):
      return run_optembed_stages(config, workdir)
    return None

  def split(self, name: str) -> dict[str, np.ndarray]:
    """A split's arrays (cached)."""
    if name not in self._splits:
      self._splits[name] = load_split(self.config.data, name)
    return self._splits[name]

  def model(self, rngs: nnx.Rngs) -> DLRM:
    tables = make_tables(self.config.model, self.cards, rngs)
    return DLRM(tables, ctr_data.NUM_DENSE, tuple(self.config.model.get("bottom", (64,))),
                tuple(self.config.model.get("top", (64, 32))), rngs=rngs)

  def loss(self, model, extra_params, batch, key):
    kwargs = {}
    if self.supernet:
      kwargs["dims"] = tables_lib.sample_dims(key, len(self.cards), model.tables.dim)
    logits = model(batch["dense"], batch["sparse"], **kwargs)
    bce = bce_with_logits(logits, batch["label"])
    metrics = {"bce": bce}
    loss = bce
    if self.kind == "optembed" and self.supernet:
      reg = model.tables.regularizer()
      loss = bce + float(self.config.objective.get("optembed_reg", 1e-4)) * reg
      kept = (model.tables.row_mask() > 0.5).astype(jnp.float32)[:model.tables.rows]
      metrics["kept_rows_frac"] = jnp.mean(kept)
    return loss, metrics

  def train_data(self) -> TrainData:
    arrays = self.split("train")
    return TrainData(ArraySource({k: arrays[k] for k in ("dense", "sparse", "label")}))

  def optimizer(self):
    from jaxemb.train.optim import make_optimizer
    tx, schedule = make_optimizer(self.config.optim, self.config.total_steps)
    if self.config.objective.get("table_optimizer", "adamw") == "adamw":
      return tx, schedule
    # the tables follow the same schedule shape, scaled to their own peak rate; the rest is Adam
    # (b1, b2, eps of config.optim; no weight decay or clipping) in the same transformation
    scale = float(self.config.objective.get("table_lr", 0.05)) / float(self.config.optim.lr)
    optim = self.config.optim
    tx = rowwise.rowwise_adagrad_adam(lambda step: scale * schedule(step), schedule,
                                      b1=optim.b1, b2=optim.b2, eps=optim.eps)
    return tx, schedule

  def evaluator(self, specs, mesh):
    specs = evaluator_specs(specs, EVALUATOR_KEYS)
    if not specs:
      return None

    def evaluate(model, step):
      del step
      out = {"params/embedding": float(model.tables.num_params)}
      for spec in specs:
        split = spec.get("split", "test")
        arrays = self.split(split)
        logits = predict(model, arrays["dense"], arrays["sparse"],
                         int(spec.get("batch_size", 4096)))
        out.update(ctr_metrics_of(arrays["label"], logits, arrays["prob"], split))
      return out

    return evaluate


def optembed_search(recipe: CTR, model: DLRM, budget_params: float | None = None, *,
                    split: str = "validation", seed: int = 0, population: int = 12,
                    generations: int = 4, rows: int = 8192) -> tuple[np.ndarray, np.ndarray, float]:
  """OptEmbed's search on a trained supernet: per-field dims maximising `split` AUC (on its first
  `rows` rows) with the supernet's surviving rows, subject to sum_f kept_rows_f * dims_f <=
  `budget_params`. Returns (dims, keep mask over all table rows, best AUC)."""
  tables = model.tables
  kept = tables.kept_rows()
  arrays = recipe.split(split)
  dense, sparse, labels = (arrays[k][:rows] for k in ("dense", "sparse", "label"))
  graph, params = functional.split(model)

  @jax.jit
  def logits_with(params, dims):
    return graph.merge(params)(jnp.asarray(dense), jnp.asarray(sparse), dims=dims)

  def score(dims):
    return ctr_metrics.auc(labels, np.asarray(logits_with(params, jnp.asarray(dims, jnp.int32))))

  dims, best = tables_lib.search_dims(
      score, len(recipe.cards), tables.dim, seed=seed, population=population,
      generations=generations, cost=lambda d: float((kept * d).sum()), budget=budget_params)
  return dims, tables.keep_mask(), best


def run_optembed_stages(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """OptEmbed's three stages in sequence, each a run of the shared loop:

  1. supernet with row pruning (sampled per-field dims, learnable thresholds) in
     `workdir/supernet`;
  2. search (`optembed_search`, seeded by `config.seed`): per-field dims maximising validation
     AUC with at most `model.budget` x the supernet table's dim-`dim` parameters
     (`sum_f kept_rows_f * dims_f`); dims and AUC in `workdir/optembed_search.json`, the row
     mask in `workdir/optembed_keep.npy`;
  3. retrain with those dims and rows in `workdir` itself (so `jaxemb train` shows its table).

  Rerunning resumes: a finished stage restores and trains nothing, a written search is reused.
  Returns the retrain's `loop.run` summary plus "stages": the supernet's final evaluation and the
  search result.
  """
  from jaxemb.train import loop
  if config.model.get("table") != "optembed":
    raise ValueError(f"run_optembed_stages needs model.table='optembed', got "
                     f"{config.model.get('table')!r}")
  base = ml_collections.ConfigDict(config.to_dict())
  base.model.optembed_stages = False
  if base.model.get("optembed_dims") or base.model.get("optembed_keep"):
    raise ValueError("model.optembed_stages searches the dims itself: leave "
                     "model.optembed_dims and model.optembed_keep empty")
  os.makedirs(workdir, exist_ok=True)
  supernet = loop.run(base, os.path.join(workdir, "supernet"))
  model = supernet["graph"].merge(jax.device_get(supernet["state"]["params"]["model"]))
  budget = float(config.model.get("budget", 1.0)) * model.tables.rows * model.tables.dim
  search_file = os.path.join(workdir, "optembed_search.json")
  keep_file = os.path.join(workdir, "optembed_keep.npy")
  if os.path.exists(search_file) and os.path.exists(keep_file):
    with open(search_file) as f:
      search = json.load(f)
  else:
    dims, keep, auc = optembed_search(
        supernet["recipe"], model, budget, seed=int(config.get("seed", 0)),
        population=int(config.model.get("optembed_population", 8)),
        generations=int(config.model.get("optembed_generations", 3)))
    np.save(keep_file, keep)
    search = {"dims": [int(d) for d in dims], "validation_auc": float(auc),
              "budget_params": budget, "kept_rows": model.tables.kept_rows().tolist()}
    with open(search_file + ".tmp", "w") as f:  # rename: a killed run leaves no half file
      json.dump(search, f)
    os.replace(search_file + ".tmp", search_file)
  retrain = ml_collections.ConfigDict(base.to_dict())
  retrain.model.optembed_dims = tuple(search["dims"])
  retrain.model.optembed_keep = keep_file
  summary = loop.run(retrain, workdir)
  summary["stages"] = {"supernet": supernet["eval_end"], "search": search}
  return summary


RECIPE = CTR
