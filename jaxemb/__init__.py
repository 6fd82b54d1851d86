"""jaxemb: learn, adapt and evaluate embeddings at scale with JAX.

    import jaxemb
    model = jaxemb.load_pretrained("all-MiniLM-L6-v2")
    emb = jaxemb.encode(model, ["a sentence", "another"])   # float32 [2, 384], L2-normalised
    jaxemb.save_pretrained(model, "out/")                    # sentence-transformers directory
    graphdef, params = jaxemb.split(model.module)            # functional API:
    jaxemb.apply(graphdef, params, {"input_ids": ..., "attention_mask": ...})
"""

from jaxemb.encoding import encode
from jaxemb.functional import apply, merge, split
from jaxemb.model import EmbeddingModel
from jaxemb.pretrained.sentence_transformers import load_pretrained, save_pretrained

__all__ = ["EmbeddingModel", "apply", "encode", "load_pretrained", "merge", "save_pretrained",
           "split"]
__version__ = "0.1.0"
