"""Evaluate a jaxemb model with MTEB 2.x (`pip install 'jaxemb[mteb]'`).

    import mteb, jaxemb
    from jaxemb.integrations.mteb import MTEBEncoder
    model = MTEBEncoder(jaxemb.load_pretrained("all-MiniLM-L6-v2"), name="me/minilm-jax")
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))

`MTEBEncoder` implements MTEB's encoder protocol as a subclass of its `AbsEncoder`: batches
arrive as dicts with a "text" list; the model's own prompts (from
config_sentence_transformers.json, e.g. "query" / "document") are MTEB's `model_prompts`, picked
per task and prompt type by MTEB's rules (task-name, task-type, then prompt-type keys).
Similarity is cosine. MTEB (and the torch it needs) is imported only by this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
  from mteb.models.abs_encoder import AbsEncoder
  from mteb.models.model_meta import ModelMeta, ScoringFunction
except ImportError as e:  # an optional extra: say how to get it
  raise ImportError("jaxemb.integrations.mteb needs MTEB 2.x: pip install 'jaxemb[mteb]'") from e

from jaxemb import inference
from jaxemb.model import EmbeddingModel


class MTEBEncoder(AbsEncoder):
  """An `EmbeddingModel` as an MTEB encoder.

  Args:
    model: the jaxemb model.
    name: the name MTEB records results under, "organisation/model" style.
    revision: recorded with the results.
    prompts: name -> prompt text, overriding the model's own prompts (MTEB keys such as
      "query", "document", a task type like "Retrieval-query", or a task name).
    batch_size: texts per forward pass (MTEB's own `batch_size` in encode kwargs wins).
  """

  def __init__(self, model: EmbeddingModel, *, name: str = "jaxemb/model",
               revision: str | None = None, prompts: dict[str, str] | None = None,
               batch_size: int = 64):
    if not isinstance(name, str) or "/" not in name:
      raise ValueError(f"name={name!r}; MTEB expects 'organisation/model'")
    self.model = model
    self.batch_size = batch_size
    self.model_prompts = dict(prompts if prompts is not None else inference.prompts_of(model))
    self.mteb_model_meta = ModelMeta.create_empty({
        "name": name,
        "revision": revision or "no_revision_available",
        "framework": ["JAX"],
        "similarity_fn_name": ScoringFunction.COSINE,
        "embed_dim": model.dim,
        "max_tokens": model.max_seq_length,
        "open_weights": True,
        "use_instructions": bool(self.model_prompts),
    })

  def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
             prompt_type=None, **kwargs: Any) -> np.ndarray:
    """Embeds every text of MTEB's data loader (float32 [N, D], L2-normalised)."""
    texts = [text for batch in inputs for text in batch["text"]]
    prompt_name = self.get_prompt_name(task_metadata, prompt_type)
    # "" (an explicit empty prompt) keeps the model's default prompt from being applied.
    prompt = self.model_prompts[prompt_name] if prompt_name is not None else ""
    return inference.encode(self.model, texts, prompt=prompt,
                            batch_size=kwargs.get("batch_size") or self.batch_size,
                            show_progress=False)
