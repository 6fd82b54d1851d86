"""jaxemb: learn, adapt and evaluate embeddings at scale with JAX.

    import jaxemb
    model = jaxemb.load_pretrained("all-MiniLM-L6-v2")
    emb = jaxemb.encode(model, ["a sentence", "another"])   # float32 [2, 384], L2-normalised
    jaxemb.save_pretrained(model, "out/")                    # sentence-transformers directory
    graphdef, params = jaxemb.split(model.module)            # functional API:
    jaxemb.apply(graphdef, params, {"input_ids": ..., "attention_mask": ...})

The public names are imported on first use (PEP 562 `__getattr__`), so `import jaxemb` itself
costs almost nothing and never pulls in what a command does not use (JAX, TensorFlow Datasets,
grain, Orbax); each name is then an ordinary attribute.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Public name -> the module that defines it. A new public name is one line here.
_LAZY = {
    "EmbeddingModel": "jaxemb.model",
    "Index": "jaxemb.search",
    "apply": "jaxemb.functional",
    "encode": "jaxemb.inference",
    "encode_document": "jaxemb.inference",
    "encode_query": "jaxemb.inference",
    "load_pretrained": "jaxemb.pretrained.sentence_transformers",
    "merge": "jaxemb.functional",
    "quantize_embeddings": "jaxemb.quantization",
    "save_pretrained": "jaxemb.pretrained.sentence_transformers",
    "semantic_search": "jaxemb.search",
    "similarity": "jaxemb.quantization",
    "split": "jaxemb.functional",
}

__all__ = sorted(_LAZY)
__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
  from jaxemb.functional import apply, merge, split
  from jaxemb.inference import encode, encode_document, encode_query
  from jaxemb.quantization import quantize_embeddings, similarity
  from jaxemb.search import Index, semantic_search
  from jaxemb.model import EmbeddingModel
  from jaxemb.pretrained.sentence_transformers import load_pretrained, save_pretrained


def __getattr__(name: str):
  if name not in _LAZY:
    raise AttributeError(f"module 'jaxemb' has no attribute {name!r}")
  value = getattr(importlib.import_module(_LAZY[name]), name)
  globals()[name] = value  # later look-ups skip this function
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY))
