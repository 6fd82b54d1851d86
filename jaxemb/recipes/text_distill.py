"""Recipe `text_distill`: a (smaller) text embedder distilled from a frozen teacher.

The student is `text_pairs`'s model (e.g. `model.pretrained="all-MiniLM-L6-v2"` with
`model.num_layers=3`: the teacher's first 3 layers); the data are `text_pairs`'s (query, code)
pairs. Config sections beyond `text_pairs`'s:

  teacher = dict(model="all-MiniLM-L6-v2",   # a name or sentence-transformers directory
                 cache="")                   # .npz file of the cached teacher embeddings
  distill = dict(loss="mse" | "score_kl" | "trg", weight=1.0,
                 task_weight=0.0,            # + task_weight * the `objective` (e.g. InfoNCE)
                 temperature=0.05, teacher_temperature=0.0,           # score_kl (0: = T)
                 node_weight=1.0, edge_weight=1.0, node_temperature=0.1,
                 edge_temperature=0.1)                                # trg

The teacher never trains:
  - "mse" (`objectives.mse_distillation` on queries and codes, averaged) and "score_kl"
    (`objectives.distill.score_kl` of the student's in-batch scores against
    `teacher_q @ teacher_d.T`) read teacher embeddings computed once, before training, for
    every training pair at the student's truncation lengths (kept in memory, and in
    `teacher.cache` when given), carried in the batch as "teacher_q" / "teacher_d";
  - "trg" (`objectives.distill.trg_loss` on the query and the code tokens, averaged) needs the
    teacher's token states, so the teacher runs inside the loss, under `stop_gradient`, from
    parameters held in the extra params under "teacher", which the optimiser leaves alone
    (its updates are set to zero after AdamW, as `optax.set_to_zero` would).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxemb import functional, objectives
from jaxemb.nn.embedder import l2_normalize
from jaxemb.objectives import distill as distill_lib
from jaxemb.recipes.base import TrainData, check_keys
from jaxemb.recipes.text_pairs import TextPairs, embed_pair
from jaxemb.train.optim import zero_updates

LOSSES = ("mse", "score_kl", "trg")
TEACHER_KEYS = frozenset({"model", "cache"})
DISTILL_KEYS = frozenset({"loss", "weight", "task_weight", "temperature", "teacher_temperature",
                          "node_weight", "edge_weight", "node_temperature", "edge_temperature"})
# Default truncation lengths of the stdlib_code_search dataset (`data.code_search`).
_DEFAULT_LENGTHS = {"query_lengths": (16, 32), "code_lengths": (64, 128)}


def embed_with_tokens(module, ids: jax.Array, mask: jax.Array, *, deterministic: bool
                      ) -> tuple[jax.Array, jax.Array]:
  """(sentence embeddings `[B, D]` as `module(ids, mask)` gives them, last token states
  `[B, L, D]`) of a `SentenceEmbedder` whose pooler reads the last layer only."""
  if module.pooler.kind == "multi_layer":
    raise ValueError("distill.loss='trg' needs a pooler of the last layer's states, got "
                     "'multi_layer'")
  tokens = module.encoder(ids, mask, deterministic=deterministic).last_hidden_state
  pooled = module.pooler(tokens, mask)
  return (l2_normalize(pooled) if module.normalize else pooled.astype(jnp.float32)), tokens


def distill_loss(options: Mapping[str, Any], q: jax.Array, d: jax.Array, batch: dict
                 ) -> tuple[jax.Array, dict]:
  """The embedding-level loss `options["loss"]` ("mse" or "score_kl") of student query / code
  embeddings `q`, `d` against the batch's cached "teacher_q" / "teacher_d"."""
  tq, td = batch["teacher_q"], batch["teacher_d"]
  if options["loss"] == "mse":
    lq, _ = objectives.mse_distillation(q, tq)
    ld, _ = objectives.mse_distillation(d, td)
    loss = (lq + ld) / 2
    return loss, {"loss": loss, "mse_query": lq, "mse_code": ld}
  if options["loss"] == "score_kl":
    teacher_scores = jnp.matmul(tq.astype(jnp.float32), td.astype(jnp.float32).T,
                                precision=jax.lax.Precision.HIGHEST)
    return distill_lib.score_kl(q, d, teacher_scores,
                                temperature=options.get("temperature", 0.05),
                                teacher_temperature=options.get("teacher_temperature") or None)
  raise ValueError(f"distill.loss={options['loss']!r} is not an embedding-level loss; "
                   "expected 'mse' or 'score_kl'")


def trg_pair_loss(options: Mapping[str, Any], student_q, teacher_q, q_mask, student_d, teacher_d,
                  d_mask) -> tuple[jax.Array, dict]:
  """`trg_loss` of the query tokens and of the code tokens, averaged (metrics too)."""
  kwargs = {k: options.get(k, 1.0 if k.endswith("weight") else 0.1)
            for k in ("node_weight", "edge_weight", "node_temperature", "edge_temperature")}
  lq, mq = distill_lib.trg_loss(student_q, teacher_q, q_mask, **kwargs)
  ld, md = distill_lib.trg_loss(student_d, teacher_d, d_mask, **kwargs)
  return (lq + ld) / 2, {k: (mq[k] + md[k]) / 2 for k in mq}


class _WithTeacher:
  """A pair source whose rows also carry the cached teacher embeddings of that row."""

  def __init__(self, source, teacher_q: np.ndarray, teacher_d: np.ndarray):
    self._source, self._q, self._d = source, teacher_q, teacher_d

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    return {**self._source[index], "teacher_q": self._q[index], "teacher_d": self._d[index]}


def _pass_teacher(transform):
  def apply(batch: dict, index: int) -> dict:
    out = dict(transform(batch, index)) if transform is not None else dict(batch)
    out["teacher_q"] = np.asarray(batch["teacher_q"], np.float32)
    out["teacher_d"] = np.asarray(batch["teacher_d"], np.float32)
    return out
  return apply


def _texts(source, field: str) -> list[str]:
  out = []
  for i in range(len(source)):
    row = source[i]
    if field not in row:
      raise ValueError(f"distillation needs (query, code) text pairs; the training source's "
                       f"rows have fields {sorted(row)}")
    value = np.asarray(row[field]).item()
    out.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
  return out


class TextDistill(TextPairs):
  """`text_pairs` plus a frozen teacher; the loss is `distill.weight` times the distillation
  loss plus `distill.task_weight` times the `objective` (0 by default: pure distillation)."""

  config_keys = TextPairs.config_keys | {"teacher", "distill"}

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    check_keys("teacher", config.teacher, TEACHER_KEYS)
    check_keys("distill", config.distill, DISTILL_KEYS)
    self.distill = dict(config.distill)
    if self.distill.get("loss") not in LOSSES:
      raise ValueError(f"distill.loss={self.distill.get('loss')!r}; expected one of {LOSSES}")
    if not config.teacher.get("model"):
      raise ValueError("recipe text_distill needs teacher.model (a model name or directory)")
    if self.gradcache_chunk:
      raise ValueError("recipe text_distill does not support gradcache_chunk")
    if self.pack_length and self.distill["loss"] == "trg":
      raise ValueError("distill.loss='trg' reads token states of padded batches; set "
                       "pack_length=0")
    from jaxemb.pretrained.sentence_transformers import load_pretrained
    self.teacher = load_pretrained(config.teacher.model)
    if self.distill["loss"] == "trg":
      self._teacher_graph, self._teacher_params = functional.split(self.teacher.module)

  # --- frozen teacher -------------------------------------------------------------------------

  def extra_params(self) -> dict[str, Any]:
    extra = super().extra_params()
    if self.distill["loss"] == "trg":
      extra["teacher"] = self._teacher_params
    return extra

  def optimizer(self):
    tx, schedule = super().optimizer()
    if self.distill["loss"] != "trg":
      return tx, schedule
    # The teacher's updates are set to zero after AdamW (so weight decay cannot move it
    # either); the cost is AdamW moments for the teacher (see `zero_updates`).
    frozen = zero_updates(lambda name: name.startswith("extra/teacher/"))
    return optax.chain(tx, frozen), schedule

  def teacher_embeddings(self, source) -> tuple[np.ndarray, np.ndarray]:
    """Teacher embeddings `[N, D]` of every training query and code, each truncated at the
    student's longest length of its side; read from / written to `teacher.cache` if set."""
    data = self.config.data
    lengths = {k: int(tuple(data.get(k) or v)[-1]) for k, v in _DEFAULT_LENGTHS.items()}
    key = json.dumps({"teacher": str(self.config.teacher.model), "data": str(data.get("name")),
                      "split": str(data.get("split")), **lengths, "rows": len(source)})
    path = self.config.teacher.get("cache") or ""
    if path and os.path.isfile(path):
      with np.load(path) as cached:
        if str(cached["key"]) == key:
          return cached["teacher_q"], cached["teacher_d"]
    from jaxemb.encoding import encode
    out = []
    for field, length in (("query", lengths["query_lengths"]), ("code", lengths["code_lengths"])):
      model = dataclasses.replace(self.teacher, max_seq_length=length)
      out.append(encode(model, _texts(source, field), show_progress=False).astype(np.float32))
    if path:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      np.savez(path, teacher_q=out[0], teacher_d=out[1], key=np.asarray(key))
    return out[0], out[1]

  # --- loss and data --------------------------------------------------------------------------

  def loss(self, model, extra_params, batch, key):
    if "neg_ids" in batch:
      raise ValueError("recipe text_distill does not use hard negatives ('neg_ids')")
    opts = self.distill
    if opts["loss"] == "trg":
      teacher = self._teacher_graph.merge(jax.lax.stop_gradient(extra_params["teacher"]))
      sides = []
      for side in ("query", "doc"):
        ids, mask = batch[f"{side}_ids"], batch[f"{side}_mask"]
        emb, tokens = embed_with_tokens(model, ids, mask, deterministic=False)
        teacher_tokens = teacher.encoder(ids, mask, deterministic=True).last_hidden_state
        sides.append((emb, tokens, jax.lax.stop_gradient(teacher_tokens), mask))
      (q, q_tok, tq_tok, q_mask), (d, d_tok, td_tok, d_mask) = sides
      loss, metrics = trg_pair_loss(opts, q_tok, tq_tok, q_mask, d_tok, td_tok, d_mask)
    else:
      q, d = embed_pair(model, batch)
      loss, metrics = distill_loss(opts, q, d, batch)
    metrics = {f"distill_{k}": v for k, v in metrics.items()}
    total = opts.get("weight", 1.0) * loss
    if opts.get("task_weight"):
      task, task_metrics = self._loss(q, d, batch, extra_params, None)
      total = total + opts["task_weight"] * task
      metrics.update({f"task_{k}": v for k, v in task_metrics.items()})
    return total, {**metrics, "loss": total}

  def train_data(self) -> TrainData:
    data = super().train_data()
    if self.distill["loss"] == "trg":
      return data
    teacher_q, teacher_d = self.teacher_embeddings(data.source)
    return TrainData(_WithTeacher(data.source, teacher_q, teacher_d),
                     _pass_teacher(data.transform), data.shuffle)


RECIPE = TextDistill
