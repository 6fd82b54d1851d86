"""Entity clusters for LEMON-style negatives (the `kge` recipe's `objective.sampler="lemon"`):
entity labels embedded with a jaxemb text encoder and clustered, so corruptions can be drawn
from the true entity's cluster (LEMON: "LanguagE ModeL for Negative Sampling of Knowledge Graph
Embeddings").

    assignment = entity_clusters(graph.entities, 16, cache_dir)   # [E] cluster ids, cached
    tables = objectives.kge.cluster_tables(assignment)            # look-ups for the sampler

A label is its entity's name with "_" read as a space (the vendored graphs' labels, e.g.
"amino_acid_peptide_or_protein"). Embeddings (L2-normalised, `jaxemb.encode`) are clustered
with the JAX k-means of `jaxemb.evaluate.clustering`; both are computed once and stored in
`cache_dir/kge_lemon/<sha1 of encoder, k, seed and labels>.npz`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import numpy as np

from jaxemb.evaluate import clustering


def label_texts(labels: Sequence[str]) -> list[str]:
  """Entity labels as text: "_" read as a space, surrounding whitespace stripped."""
  return [str(x).replace("_", " ").strip() for x in labels]


def cache_path(cache_dir: str, labels: Sequence[str], num_clusters: int, encoder: str,
               seed: int) -> str:
  """Where `entity_clusters` stores its result for these inputs."""
  key = json.dumps([encoder, int(num_clusters), int(seed), list(labels)])
  return os.path.join(cache_dir, "kge_lemon", hashlib.sha1(key.encode()).hexdigest() + ".npz")


def entity_clusters(labels: Sequence[str], num_clusters: int, cache_dir: str, *,
                    encoder: str = "all-MiniLM-L6-v2", seed: int = 0) -> np.ndarray:
  """`[E]` int32 cluster ids of the entities, by k-means over their label embeddings.

  Args:
    labels: entity labels, id = position.
    num_clusters: k, in [1, E].
    cache_dir: directory of the cache (created when missing).
    encoder: a name or directory for `jaxemb.load_pretrained`.
    seed: k-means++ seeding key.
  """
  if not 1 <= int(num_clusters) <= len(labels):
    raise ValueError(f"num_clusters={num_clusters} must be in [1, #entities={len(labels)}]")
  path = cache_path(cache_dir, labels, num_clusters, encoder, seed)
  if os.path.exists(path):
    with np.load(path) as stored:
      return stored["assignment"].astype(np.int32)
  import jaxemb  # the text encoder only when there is no cached result
  model = jaxemb.load_pretrained(encoder)
  embeddings = jaxemb.encode(model, label_texts(labels), show_progress=False)
  assignment = clustering.kmeans(embeddings, int(num_clusters), key=int(seed))["labels"]
  assignment = assignment.astype(np.int32)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, assignment=assignment, embeddings=embeddings)
  os.replace(tmp, path)  # atomic: a concurrent run never reads half a file
  return assignment
