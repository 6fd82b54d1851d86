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
import os
import sys
from typing import TYPE_CHECKING

CPU_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def cpu_devices_per_core(environ: dict | None = None, modules: dict | None = None) -> int | None:
  """Gives XLA one CPU device per core (a power of two, at most 8) before JAX starts.

  XLA:CPU runs one program on one device with a shared intra-op pool, which keeps about a
  third of a 2-core machine idle on MiniLM-size work (many small fused ops); spreading a
  batch's rows over one device per core (what `jaxemb.encode` and the training loop do with
  several devices) uses them all: on the project's 2-core machine warm `encode` went from
  19.0 s to 11.2 s for 2,000 texts (`benchmarks/encode_throughput.py`). Programs placed on one
  device still use every core. Nothing changes when JAX is already imported, when XLA_FLAGS
  sets a device count, or with `JAXEMB_CPU_DEVICES=N` (N devices; 1 keeps XLA's single one).
  Accelerators are unaffected (the flag only adds host devices). Returns the count set, or None.
  """
  environ = os.environ if environ is None else environ
  modules = sys.modules if modules is None else modules
  flags = environ.get("XLA_FLAGS", "")
  if "jax" in modules or CPU_DEVICES_FLAG in flags:
    return None
  wanted = environ.get("JAXEMB_CPU_DEVICES", "")
  if wanted:
    if not wanted.isdigit() or int(wanted) < 1:
      raise ValueError(f"JAXEMB_CPU_DEVICES must be a positive integer, got {wanted!r}")
    count = int(wanted)
  else:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = 1 << (min(max(cores or 1, 1), 8).bit_length() - 1)
  if count > 1:
    environ["XLA_FLAGS"] = f"{flags} {CPU_DEVICES_FLAG}={count}".strip()
  return count


cpu_devices_per_core()

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
