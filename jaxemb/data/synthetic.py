"""Synthetic paired data for smoke tests and install checks: learnable in seconds on CPU.

Each example is a query of random "topic" tokens and a document that is a noisy permutation of
them (shuffled, some tokens swapped for noise), so matching queries to documents by token
content is learnable and in-batch negatives are informative.
"""

from __future__ import annotations

import numpy as np

# Reserved ids (BERT-style): 0 pad, 1 [CLS], 2 [SEP]; content tokens start at 3.
PAD, CLS, SEP, FIRST_CONTENT = 0, 1, 2, 3


class SyntheticPairs:
  """Random-access source of paired examples (a grain `RandomAccessDataSource`).

  Example i is a pure function of (seed, i): padded "query_ids"/"query_mask"/"doc_ids"/
  "doc_mask", int32 [seq_len].
  """

  def __init__(self, num_examples: int = 4096, seq_len: int = 16, vocab_size: int = 128,
               noise: float = 0.25, seed: int = 0):
    if seq_len < 4:
      raise ValueError(f"seq_len must be >= 4, got {seq_len}")
    if vocab_size <= FIRST_CONTENT + seq_len:
      raise ValueError(f"vocab_size={vocab_size} too small for seq_len={seq_len}")
    if not 0 <= noise < 1:
      raise ValueError(f"noise must be in [0, 1), got {noise}")
    self.num_examples, self.seq_len, self.vocab_size = num_examples, seq_len, vocab_size
    self.noise, self.seed = noise, seed

  def __len__(self) -> int:
    return self.num_examples

  def _padded(self, content: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full(self.seq_len, PAD, np.int32)
    tokens = np.concatenate([[CLS], content, [SEP]])
    ids[:len(tokens)] = tokens
    mask = (np.arange(self.seq_len) < len(tokens)).astype(np.int32)
    return ids, mask

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self.num_examples:
      raise IndexError(f"index {index} out of range [0, {self.num_examples})")
    rng = np.random.default_rng([self.seed, int(index)])
    n = int(rng.integers(2, self.seq_len - 1))  # content tokens, room for CLS and SEP
    query = rng.integers(FIRST_CONTENT, self.vocab_size, n)
    doc = rng.permutation(query)
    noisy = rng.random(n) < self.noise
    doc[noisy] = rng.integers(FIRST_CONTENT, self.vocab_size, int(noisy.sum()))
    q_ids, q_mask = self._padded(query)
    d_ids, d_mask = self._padded(doc)
    return {"query_ids": q_ids, "query_mask": q_mask, "doc_ids": d_ids, "doc_mask": d_mask}


def train_dataset(options: dict, text_model=None) -> tuple[SyntheticPairs, None]:
  """`config.data.name = "synthetic_pairs"`: already tokenised, no transform needed."""
  return SyntheticPairs(**options), None
