"""Recipe `zett`: a hypernetwork that predicts token embeddings for any tokenizer (ZeTT).

The model holds the frozen source `SentenceEmbedder` ("source") and a `TokenHyperNetwork`
("hyper"). Each batch's transform samples a tokenizer from the batch index (UnigramLM built
from the batch's texts with noise as ZeTT, or a BPE / WordPiece trained on them; vocabulary
size log-uniform) and gives every row its own small vocabulary: the row's distinct tokens,
decomposed into <= k source pieces. The loss predicts those embeddings, embeds the row with the
frozen encoder under the sampled tokenizer, and matches the source model's embedding of the same
text under its own tokenizer (cosine or MSE), plus `aux_weight` x MSE keeping tokens that are
one source token near that token's embedding. The first `warmup_steps` steps are ZeTT's
identity warm-up: regress the source embeddings of random source tokens from themselves.

Batch (all [B, ...]): local_ids/new_mask [B, Ln] (ids into the row's vocabulary),
pieces/piece_mask [B, Ln, k], copy_ids/single [B, Ln], src_ids/src_mask [B, Ls],
warm [B], warm_ids [B, W].

Config: `model` (pretrained: the source model), `hyper` (HyperConfig fields but hidden_size),
`data` (split, data_dir, max_chars, student_length, teacher_length, kinds, probs, vocab_min,
vocab_max, noise_std, warm_tokens), `objective` (loss, aux_weight, warmup_steps).
Export: the hypernetwork (`jaxemb.adapt.transfer.save_hypernet`), for
`jaxemb transfer --method zett --hypernet WORKDIR/export`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tokenizers
from flax import nnx

from jaxemb import functional
from jaxemb.adapt import init as init_lib
from jaxemb.adapt import tokenizers_train
from jaxemb.adapt import transfer as transfer_lib
from jaxemb.adapt.surface import Decomposer
from jaxemb.data import code_search
from jaxemb.nn.hyper import HyperConfig, TokenHyperNetwork, predict_embeddings
from jaxemb.recipes.base import Recipe, TrainData, check_keys

MODEL_KEYS = frozenset({"pretrained", "max_seq_length"})
HYPER_KEYS = frozenset({"num_layers", "num_heads", "intermediate_size", "max_pieces",
                        "dropout_rate", "residual"})
DATA_KEYS = frozenset({"split", "data_dir", "max_chars", "student_length", "teacher_length",
                       "kinds", "probs", "vocab_min", "vocab_max", "noise_std", "warm_tokens"})
OBJECTIVE_KEYS = frozenset({"loss", "aux_weight", "warmup_steps"})
EVALUATOR_KEYS = frozenset({"task", "split", "tokenizer", "data_dir"})


class ZeTTModel(nnx.Module):
  """The frozen source embedder and the hypernetwork that is trained."""

  def __init__(self, source: nnx.Module, hyper: TokenHyperNetwork):
    self.source = source
    self.hyper = hyper


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


class ZeTT(Recipe):
  """Zero-shot tokenizer transfer hypernetwork over a frozen sentence embedder."""

  config_keys = frozenset({"model", "hyper", "data", "objective"})

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    for section, keys in (("model", MODEL_KEYS), ("hyper", HYPER_KEYS), ("data", DATA_KEYS),
                          ("objective", OBJECTIVE_KEYS)):
      check_keys(section, config[section], keys)
    from jaxemb.pretrained.sentence_transformers import load_pretrained
    m = config.model
    if not m.get("pretrained"):
      raise ValueError("recipe zett needs the source model: set config.model.pretrained")
    self.source = load_pretrained(m.pretrained, max_seq_length=m.get("max_seq_length") or None)
    self._source_split = nnx.split(self.source.module)
    self.hyper_cfg = HyperConfig(hidden_size=self.source.dim, **dict(config.hyper))
    d = config.data
    self.student_length = int(d.get("student_length", 64))
    self.teacher_length = min(int(d.get("teacher_length", 128)), self.source.max_seq_length)
    self.max_chars = int(d.get("max_chars", 300))
    self.warm_tokens = int(d.get("warm_tokens", 64))
    if min(self.student_length, self.teacher_length, self.max_chars, self.warm_tokens) < 1:
      raise ValueError("data.student_length, teacher_length, max_chars and warm_tokens must "
                       "be >= 1")
    self.objective = config.objective.get("loss", "cosine")
    transfer_lib.distill_loss(jnp.zeros((1, 1)), jnp.zeros((1, 1)), self.objective)
    self.decomposer = Decomposer(self.source.tokenizer)
    specials = set(init_lib.special_tokens(self.source.tokenizer).values())
    self.regular_source = np.setdiff1d(
        np.arange(self.source.tokenizer.get_vocab_size(True)), sorted(specials))
    self.pad_source = self.source.pad_token_id

  # --- model and loss -------------------------------------------------------------------------

  def model(self, rngs: nnx.Rngs) -> nnx.Module:
    return ZeTTModel(nnx.merge(*self._source_split), TokenHyperNetwork(self.hyper_cfg, rngs=rngs))

  def optimizer(self):
    from jaxemb.train.optim import make_optimizer
    tx, schedule = make_optimizer(self.config.optim, self.config.total_steps)

    # 1 for the hypernetwork, 0 for the frozen source. Updates are multiplied by it after the
    # optimiser (so weight decay never touches the source), keeping the optimiser state shaped
    # like the parameters (optax.multi_transform's masked state does not map to shardings).
    abstract = nnx.eval_shape(lambda: self.model(nnx.Rngs(0)))
    model_params = nnx.split(abstract, nnx.Param, ...)[1].to_pure_dict()
    scale = {"model": {name: jax.tree.map(lambda _, n=name: 0.0 if n == "source" else 1.0, sub)
                       for name, sub in model_params.items()},
             "extra": jax.tree.map(lambda _: 1.0, jax.eval_shape(self.extra_params))}

    def update(updates, state, params=None):
      return jax.tree.map(lambda u, m: u * m, updates, scale), state

    freeze = optax.GradientTransformation(lambda params: optax.EmptyState(), update)
    return optax.chain(tx, freeze), schedule

  def loss(self, model, extra_params, batch, key):
    src_graph, src_params = functional.split(model.source)
    src_params = jax.lax.stop_gradient(src_params)
    hyper_graph, hyper_params = functional.split(model.hyper)
    table = transfer_lib.get_word_table(src_params)
    aux_weight = float(self.config.objective.get("aux_weight", 0.5))
    zero = jnp.float32(0.0)

    def warm(operands):
      hp, sp = operands
      ids = batch["warm_ids"]
      ones = jnp.ones(ids.shape + (1,), jnp.int32)
      pred = predict_embeddings(functional.merge(hyper_graph, hp),
                                transfer_lib.get_word_table(sp), ids[..., None], ones,
                                -jnp.ones(ids.shape, jnp.int32))
      value = jnp.mean(jnp.square(pred - jnp.take(table, ids, axis=0)))
      return value, {"warm_loss": value, "distill_loss": zero, "aux_loss": zero}

    def main(operands):
      hp, sp = operands
      pred = predict_embeddings(functional.merge(hyper_graph, hp),
                                transfer_lib.get_word_table(sp), batch["pieces"],
                                batch["piece_mask"], batch["copy_ids"])
      b, n, d = pred.shape
      # Row r's tokens index rows [r*n, (r+1)*n) of one flat table: per-row vocabularies.
      ids = batch["local_ids"] + jnp.arange(b, dtype=jnp.int32)[:, None] * n
      student = transfer_lib.pooled_embeddings(
          src_graph, transfer_lib.set_word_table(sp, pred.reshape(b * n, d)), ids,
          batch["new_mask"])
      teacher = jax.lax.stop_gradient(transfer_lib.pooled_embeddings(
          src_graph, sp, batch["src_ids"], batch["src_mask"]))
      distill = transfer_lib.distill_loss(student, teacher, self.objective)
      single = batch["single"]
      weight = (single >= 0).astype(jnp.float32)
      target = jnp.take(table, jnp.maximum(single, 0), axis=0)
      aux = jnp.sum(weight * jnp.mean(jnp.square(pred - target), -1)) / jnp.maximum(
          weight.sum(), 1.0)
      return distill + aux_weight * aux, {"warm_loss": zero, "distill_loss": distill,
                                          "aux_loss": aux}

    return jax.lax.cond(batch["warm"][0] > 0, warm, main, (hyper_params, src_params))

  # --- data -----------------------------------------------------------------------------------

  def sampler_options(self) -> dict[str, Any]:
    d = self.config.data
    return dict(kinds=tuple(d.get("kinds", tokenizers_train.SAMPLED_KINDS)),
                probs=tuple(d.get("probs", (0.6, 0.2, 0.2))),
                vocab_range=(int(d.get("vocab_min", 1000)), int(d.get("vocab_max", 8000))),
                noise_std=float(d.get("noise_std", 1.0)))

  def make_batch(self, texts: list[str], index: int) -> dict[str, np.ndarray]:
    """The batch arrays for `texts` at global batch `index` (see the module docstring)."""
    rng = np.random.default_rng([int(self.config.seed), int(index)])
    warmup = index < int(self.config.objective.get("warmup_steps", 0))
    b, n, k = len(texts), self.student_length, self.hyper_cfg.max_pieces
    out = {"warm": np.full((b,), int(warmup), np.int32),
           "warm_ids": rng.choice(self.regular_source, size=(b, self.warm_tokens)).astype(
               np.int32)}
    sampled = tokenizers_train.sample_tokenizer(texts, rng, **self.sampler_options())
    tok = transfer_lib.prepare_tokenizer(self.source.tokenizer, sampled)
    tok.enable_truncation(max_length=n)
    new_ids = [e.ids for e in tok.encode_batch(texts)]
    pad_new = tok.token_to_id(transfer_lib._pad_token(tok))
    used = sorted({i for ids in new_ids for i in ids} | {pad_new})
    plan = init_lib.build_plan(self.source.tokenizer, tok, ids=used, decomposer=self.decomposer)
    out.update(local_ids=np.zeros((b, n), np.int32), new_mask=np.zeros((b, n), np.int32),
               pieces=np.zeros((b, n, k), np.int32), piece_mask=np.zeros((b, n, k), np.int32),
               copy_ids=np.zeros((b, n), np.int32), single=np.full((b, n), -1, np.int32))
    for r, ids in enumerate(new_ids):
      vocab = list(dict.fromkeys(ids + [pad_new]))  # the row's own vocabulary, pad included
      local = {t: i for i, t in enumerate(vocab)}
      vocab += [pad_new] * (n - len(vocab))  # unused entries: copies of the pad row
      pieces, mask, copy_ids = transfer_lib.piece_arrays(plan, vocab, k, self.pad_source)
      out["pieces"][r], out["piece_mask"][r], out["copy_ids"][r] = pieces, mask, copy_ids
      out["local_ids"][r] = local[pad_new]
      out["local_ids"][r, :len(ids)] = [local[t] for t in ids]
      out["new_mask"][r, :len(ids)] = 1
      for i, t in enumerate(vocab[:len(local)]):
        p = plan.pieces[t]
        if t not in plan.special and len(p) == 1 and p[0] != self.decomposer.unk_id:
          out["single"][r, i] = p[0]
    src = tokenizers.Tokenizer.from_str(self.source.tokenizer.to_str())
    src.no_padding()
    src.enable_truncation(max_length=self.teacher_length)
    out["src_ids"] = np.full((b, self.teacher_length), self.pad_source, np.int32)
    out["src_mask"] = np.zeros((b, self.teacher_length), np.int32)
    for r, e in enumerate(src.encode_batch(texts)):
      out["src_ids"][r, :len(e.ids)] = e.ids
      out["src_mask"][r, :len(e.ids)] = 1
    return out

  def train_data(self) -> TrainData:
    d = self.config.data

    def transform(batch: dict, index: int) -> dict:
      rng = np.random.default_rng([int(self.config.seed), int(index), 1])
      # Half the rows embed a docstring, half the start of a function's code.
      texts = [_text(q) if rng.random() < 0.5 else _text(c)[:self.max_chars]
               for q, c in zip(batch["query"], batch["code"])]
      return self.make_batch(texts, index)

    return TrainData(code_search.TextPairs(d.get("split", "train"), d.get("data_dir") or None),
                     transform)

  # --- evaluation and export ------------------------------------------------------------------

  def transferred(self, model: ZeTTModel, tokenizer) -> Any:
    """The source model moved to `tokenizer` with embeddings predicted by `model.hyper`."""
    # The source part of `model` is frozen, so the host copy in self.source equals it.
    return transfer_lib.transfer(self.source, tokenizer, "zett", hypernet=model.hyper)

  def evaluator(self, specs, mesh):
    if not specs:
      return None
    import jaxemb
    for spec in specs:
      check_keys("evaluators[]", spec, EVALUATOR_KEYS)
      if spec.get("task", code_search.NAME) != code_search.NAME or not spec.get("tokenizer"):
        raise ValueError(f"zett evaluators are dict(task={code_search.NAME!r}, split=..., "
                         f"tokenizer=PATH); got {dict(spec)}")

    def evaluate(model, step):
      metrics = {}
      for spec in specs:
        new = self.transferred(model, spec["tokenizer"])
        result = code_search.evaluate_model(
            lambda texts: jaxemb.encode(new, texts, show_progress=False),
            spec.get("split", "validation"), spec.get("data_dir") or None)
        name = spec.get("split", "validation")
        metrics.update({f"{name}/{k}": float(v) for k, v in result.items()})
      return metrics

    return evaluate

  def export(self, model, directory: str) -> str:
    return str(transfer_lib.save_hypernet(model.hyper, directory))


RECIPE = ZeTT
