"""LEMON-style negatives: cluster look-up tables, the on-device clustered sampler (only
same-cluster ids at mix 1, uniform at mix 0, the mix in between by a binomial check), label
clustering with its cache, and the recipe's `sampler="lemon"`."""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxemb.data import kg
from jaxemb.objectives import kge as obj
from jaxemb.data import kg_clusters

REPO = pathlib.Path(__file__).resolve().parents[1]
E = 40
# 5 clusters of 8 (shuffled ids) plus entity 39 alone in cluster 5.
ASSIGN = np.concatenate([np.random.default_rng(0).permutation(np.repeat(np.arange(5), 8)[:39]),
                         [5]])


def _tables(assign=ASSIGN):
  return {k: jnp.asarray(v) for k, v in obj.cluster_tables(assign).items()}


def test_cluster_tables_by_hand():
  t = obj.cluster_tables(np.array([1, 0, 1, 2, 1]))
  np.testing.assert_array_equal(t["members"], [1, 0, 2, 4, 3])
  np.testing.assert_array_equal(t["start"], [0, 1, 4])
  np.testing.assert_array_equal(t["size"], [1, 3, 1])
  np.testing.assert_array_equal(t["position"], [0, 0, 1, 0, 2])
  with pytest.raises(ValueError, match="cluster ids"):
    obj.cluster_tables(np.array([-1, 0]))


def _corrupted(mix, n=4000, k=8, seed=0):
  """(original ids, replacement ids) of the corrupted column of n*k negatives."""
  rng = np.random.default_rng(seed)
  triples = np.stack([rng.integers(0, E, n), rng.integers(0, 3, n), rng.integers(0, E, n)], 1)
  neg = np.asarray(obj.corrupt_clustered(jax.random.key(seed), jnp.asarray(triples, jnp.int32),
                                         k, E, _tables(), mix)).reshape(-1, 3)
  flat = np.repeat(triples, k, axis=0)
  head = np.arange(len(flat)) < (len(flat) + 1) // 2
  # The basic sampler's split: first half heads, rest tails; the other columns are unchanged.
  np.testing.assert_array_equal(np.where(head, neg[:, 2], neg[:, 0]),
                                np.where(head, flat[:, 2], flat[:, 0]))
  np.testing.assert_array_equal(neg[:, 1], flat[:, 1])
  return np.where(head, flat[:, 0], flat[:, 2]), np.where(head, neg[:, 0], neg[:, 2])


def test_mix_one_draws_only_from_the_cluster():
  old, new = _corrupted(1.0)
  assert np.all(new != old)
  single = old == 39  # a cluster without other members: uniform fallback
  assert np.all(ASSIGN[new[~single]] == ASSIGN[old[~single]])
  assert single.any() and np.any(ASSIGN[new[single]] != 5)
  # Uniform over the 7 other members: each within 5 sigma of its expected count.
  sel = old == old[~single][0]
  counts = np.bincount(new[sel], minlength=E)[ASSIGN == ASSIGN[old[sel][0]]]
  counts = counts[counts > 0]
  assert len(counts) == 7
  expect = sel.sum() / 7
  assert np.all(np.abs(counts - expect) < 5 * np.sqrt(expect))


def test_mix_zero_is_uniform():
  old, new = _corrupted(0.0)
  assert np.all(new != old)
  counts = np.bincount(new, minlength=E)
  # Uniform over the other 39 entities: per-entity counts within 5 sigma.
  expect = np.array([np.sum(old != e) / (E - 1) for e in range(E)])
  assert np.all(np.abs(counts - expect) < 5 * np.sqrt(expect))


@pytest.mark.parametrize("mix", [0.3, 0.7])
def test_mix_fraction(mix):
  old, new = _corrupted(mix, seed=1)
  keep = old != 39
  same = ASSIGN[new[keep]] == ASSIGN[old[keep]]
  # Same cluster: drawn from it (mix), or uniform and landing in it (7 of the 39 others).
  p = mix + (1 - mix) * 7 / 39
  sigma = np.sqrt(p * (1 - p) / same.size)
  assert abs(same.mean() - p) < 4 * sigma
  with pytest.raises(ValueError, match="mix"):
    obj.corrupt_clustered(jax.random.key(0), jnp.zeros((1, 3), jnp.int32), 1, E, _tables(), 1.5)


def test_label_texts():
  assert kg_clusters.label_texts(["amino_acid", " body_part "]) == ["amino acid", "body part"]


def test_cached_clusters_are_read_back(tmp_path):
  labels = [f"entity_{i}" for i in range(6)]
  path = kg_clusters.cache_path(str(tmp_path), labels, 2, "some-encoder", 0)
  os.makedirs(os.path.dirname(path))
  np.savez(path, assignment=np.array([0, 1, 0, 1, 0, 1]))
  got = kg_clusters.entity_clusters(labels, 2, str(tmp_path), encoder="some-encoder")
  np.testing.assert_array_equal(got, [0, 1, 0, 1, 0, 1])
  # Another k is another cache entry (and k out of range is rejected before any encoding).
  assert kg_clusters.cache_path(str(tmp_path), labels, 3, "some-encoder", 0) != path
  with pytest.raises(ValueError, match="num_clusters"):
    kg_clusters.entity_clusters(labels, 7, str(tmp_path))


@pytest.mark.slow
def test_minilm_clusters_separate_colours_from_animals(tmp_path):
  labels = ["red", "dark_blue", "green", "yellow", "dog", "cat", "horse", "sheep"]
  got = kg_clusters.entity_clusters(labels, 2, str(tmp_path))
  assert len(set(got[:4])) == 1 and len(set(got[4:])) == 1 and got[0] != got[4]
  assert os.path.exists(kg_clusters.cache_path(str(tmp_path), labels, 2, "all-MiniLM-L6-v2", 0))


def test_recipe_lemon_sampler(tmp_path):
  from jaxemb.recipes.kge import KGERecipe
  from jaxemb.train.config import load_config
  g = kg.synthetic(E, 3, 300, seed=0, valid_fraction=0.1, test_fraction=0.1)
  d = tmp_path / "graph"
  d.mkdir()
  kg.write_directory(g, str(d))
  c = load_config(f"{REPO}/configs/kge.py:rotate_umls_lemon,runlocal")
  c.data.graph, c.data.data_dir = str(d), str(tmp_path / "tfds")
  c.objective.lemon_clusters, c.objective.lemon_mix = 6, 1.0
  # Entities get ids in label order; the cache holds ASSIGN for them (no encoder is loaded).
  labels = kg.load(str(d), c.data.data_dir).entities
  path = kg_clusters.cache_path(c.data.data_dir, labels, 6, "all-MiniLM-L6-v2", c.seed)
  os.makedirs(os.path.dirname(path))
  np.savez(path, assignment=ASSIGN)
  recipe = KGERecipe(c)
  np.testing.assert_array_equal(recipe.clusters["cluster"], ASSIGN)
  model = recipe.model(nnx.Rngs(0))
  batch = {"triple": jnp.asarray(np.stack([recipe.train_data().source[i]["triple"]
                                           for i in range(8)]))}
  loss, _ = recipe.loss(model, {}, batch, jax.random.key(0))
  assert np.isfinite(float(loss))
  c.objective.lemon_mix = 2.0
  with pytest.raises(ValueError, match="lemon_mix"):
    KGERecipe(c)
