"""Filtered link-prediction ranks against a brute-force loop (with ties) and a hand-made case."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxemb.evaluate import link_prediction as lp

E, R = 9, 3


def _table_scores(table):
  """Score functions over a lookup table T[h, r, t] of integer scores (many ties)."""
  def tails(params, h, r):
    return params[h, r, :]

  def heads(params, r, t):
    return params[:, r, t].T
  return tails, heads


def _brute(table, triples, known, filtered=True):
  known_set = {tuple(x) for x in known}
  out = {s: {k: [] for k in ("optimistic", "pessimistic", "realistic", "candidates")}
         for s in lp.SIDES}
  for h, r, t in triples:
    for side in lp.SIDES:
      true = table[h, r, t]
      greater = ge = cand = 0
      for e in range(E):
        trip = (h, r, e) if side == "tail" else (e, r, t)
        is_true = e == (t if side == "tail" else h)
        if filtered and trip in known_set and not is_true:
          continue
        cand += 1
        s = table[trip]
        greater += s > true
        ge += s >= true
      out[side]["optimistic"].append(greater + 1)
      out[side]["pessimistic"].append(ge)
      out[side]["realistic"].append((greater + 1 + ge) / 2)
      out[side]["candidates"].append(cand)
  return out


@pytest.mark.parametrize("batch_size", [None, 4])
def test_ranks_match_brute_force_with_ties(batch_size):
  rng = np.random.default_rng(0)
  table = rng.integers(0, 4, size=(E, R, E)).astype(np.float32)  # 4 values: many ties
  known = np.unique(np.stack([rng.integers(0, E, 60), rng.integers(0, R, 60),
                              rng.integers(0, E, 60)], 1), axis=0)
  triples = known[rng.permutation(len(known))[:17]]
  tails, heads = _table_scores(table)
  got = lp.rank_triples(tails, heads, jnp.asarray(table), triples, known, E,
                        batch_size=batch_size)
  want = _brute(table, triples, known)
  for side in lp.SIDES:
    for key in want[side]:
      np.testing.assert_array_equal(got[side][key], want[side][key], err_msg=f"{side} {key}")
  unfiltered = lp.rank_triples(tails, heads, jnp.asarray(table), triples, known, E,
                               filtered=False)
  want = _brute(table, triples, known, filtered=False)
  np.testing.assert_array_equal(unfiltered["tail"]["realistic"], want["tail"]["realistic"])


def test_realistic_rank_hand_made_case():
  # One query (h=0, r=0, t=1) over 5 entities, tail scores [3, 5, 5, 1, 5]; entity 2 is a
  # known tail (filtered). Candidates: 0, 1 (true), 3, 4 -> 4. Greater than 5: none ->
  # optimistic 1; >= 5: entities 1 and 4 -> pessimistic 2; realistic 1.5 (PyKEEN's mean).
  tail_scores = np.array([3.0, 5.0, 5.0, 1.0, 5.0], np.float32)
  head_scores = np.array([2.0, 2.0, 4.0, 0.0, 0.0], np.float32)  # true head 0 scores 2

  def tails(params, h, r):
    return jnp.broadcast_to(params[0], (h.shape[0], 5))

  def heads(params, r, t):
    return jnp.broadcast_to(params[1], (r.shape[0], 5))

  known = np.array([[0, 0, 1], [0, 0, 2]])
  ranks = lp.rank_triples(tails, heads, jnp.stack([tail_scores, head_scores]),
                          np.array([[0, 0, 1]]), known, 5)
  assert ranks["tail"]["optimistic"].tolist() == [1]
  assert ranks["tail"]["pessimistic"].tolist() == [2]
  assert ranks["tail"]["realistic"].tolist() == [1.5]
  assert ranks["tail"]["candidates"].tolist() == [4]
  # Head side: nothing filtered (no other known head of (r=0, t=1)); 4 > 2 -> optimistic 2;
  # >= 2: entities 0, 1, 2 -> pessimistic 3; realistic 2.5.
  assert ranks["head"]["realistic"].tolist() == [2.5]
  m = lp.metrics(ranks)
  assert m["mrr"] == pytest.approx((1 / 1.5 + 1 / 2.5) / 2)
  assert m["mr"] == pytest.approx(2.0)
  assert m["hits@1"] == 0.0 and m["hits@3"] == 1.0
  expected = ((4 + 1) / 2 + (5 + 1) / 2) / 2  # E[MR] = mean (candidates + 1) / 2
  assert m["amri"] == pytest.approx((2.0 - expected) / (1 - expected))
  assert lp.metrics(ranks, "optimistic")["mr"] == pytest.approx(1.5)


def test_sharded_entity_table_gives_same_ranks():
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
  rng = np.random.default_rng(1)
  n, d = 64, 4
  ent = rng.normal(size=(n, d)).astype(np.float32)
  rel = rng.normal(size=(2, d)).astype(np.float32)
  triples = np.stack([rng.integers(0, n, 30), rng.integers(0, 2, 30), rng.integers(0, n, 30)], 1)

  def tails(p, h, r):
    return (p["e"][h] * p["r"][r]) @ p["e"].T

  def heads(p, r, t):
    return (p["e"][t] * p["r"][r]) @ p["e"].T

  params = {"e": jnp.asarray(ent), "r": jnp.asarray(rel)}
  mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
  sharded = {"e": jax.device_put(params["e"], NamedSharding(mesh, P("x", None))),
             "r": params["r"]}
  a = lp.rank_triples(tails, heads, params, triples, triples, n, budget=64 * 7)
  b = lp.rank_triples(tails, heads, sharded, triples, triples, n, budget=64 * 7)
  for side in lp.SIDES:
    np.testing.assert_array_equal(a[side]["realistic"], b[side]["realistic"])


def test_bad_input_raises():
  f = lambda p, a, b: jnp.zeros((a.shape[0], 3))
  with pytest.raises(ValueError, match="outside"):
    lp.rank_triples(f, f, None, np.array([[0, 0, 5]]), np.array([[0, 0, 5]]), 3)
  with pytest.raises(ValueError, match=r"\[N, 3\]"):
    lp.rank_triples(f, f, None, np.array([[0, 0]]), np.array([[0, 0, 1]]), 3)
  with pytest.raises(ValueError, match="rank_type"):
    lp.metrics({}, "average")
