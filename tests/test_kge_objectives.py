"""KGE losses against hand computations; negative samplers' distribution and invariants."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxemb.objectives import kge as obj


def _sig(x):
  return 1.0 / (1.0 + math.exp(-x))


POS = [1.0, -2.0]
NEG = [[0.5, 3.0], [-1.0, -4.0]]


def test_margin_ranking_by_hand():
  # pairs: (1, .5) -> max(0, .5-1+1)=.5; (1, 3) -> 3; (-2, -1) -> 2; (-2, -4) -> 0.
  loss, _ = obj.margin_ranking(jnp.array(POS), jnp.array(NEG), margin=1.0)
  assert float(loss) == pytest.approx((0.5 + 3.0 + 2.0 + 0.0) / 4)


def test_nssa_by_hand():
  m, a = 9.0, 0.5
  want_pos = -(math.log(_sig(m + 1.0)) + math.log(_sig(m - 2.0))) / 2
  neg_terms = []
  for row in NEG:
    z = [math.exp(a * s) for s in row]
    w = [x / sum(z) for x in z]
    neg_terms.append(sum(wi * -math.log(_sig(-s - m)) for wi, s in zip(w, row)))
  want = 0.5 * (want_pos + sum(neg_terms) / 2)
  loss, metrics = obj.nssa(jnp.array(POS), jnp.array(NEG), margin=m, adversarial_temperature=a)
  assert float(loss) == pytest.approx(want, rel=1e-6)
  assert float(metrics["loss"]) == float(loss)


def test_nssa_weights_carry_no_gradient():
  # d/dneg of the loss with weights held fixed: 0.5 * mean_b w_bk * sigmoid(neg + m) / 1.
  pos, neg = jnp.array(POS), jnp.array(NEG)
  grad = jax.grad(lambda n: obj.nssa(pos, n, 9.0, 1.0)[0])(neg)
  w = np.asarray(jax.nn.softmax(neg, axis=-1))
  want = 0.5 * w * np.asarray(jax.nn.sigmoid(neg + 9.0)) / 2
  np.testing.assert_allclose(grad, want, rtol=1e-5)


def test_pointwise_losses_by_hand():
  sp = lambda x: math.log1p(math.exp(x))
  scores = [sp(-p) for p in POS] + [sp(s) for row in NEG for s in row]
  want = sum(scores) / 6
  for fn in (obj.softplus, obj.bce):
    assert float(fn(jnp.array(POS), jnp.array(NEG))[0]) == pytest.approx(want, rel=1e-6)


def test_cross_entropy_by_hand():
  want = 0.0
  for p, row in zip(POS, NEG):
    want += -p + math.log(math.exp(p) + sum(math.exp(s) for s in row))
  loss, _ = obj.cross_entropy(jnp.array(POS), jnp.array(NEG))
  assert float(loss) == pytest.approx(want / 2, rel=1e-6)


def test_lcwa_losses_by_hand():
  scores = jnp.array([[1.0, -1.0, 0.0]])
  labels = jnp.array([[1.0, 0.0, 1.0]])
  sp = lambda x: math.log1p(math.exp(x))
  assert float(obj.lcwa_bce(scores, labels)[0]) == pytest.approx((sp(-1) + sp(-1) + sp(0)) / 3)
  lse = math.log(math.e + math.exp(-1) + 1)
  want = -(0.5 * (1 - lse) + 0.5 * (0 - lse))
  assert float(obj.lcwa_cross_entropy(scores, labels)[0]) == pytest.approx(want, rel=1e-6)


def test_lp_regularizer_by_hand():
  a = jnp.array([[3.0, 4.0], [0.0, 1.0]])  # norms 5, 1
  b = jnp.array([[1.0, 1.0]])               # norm sqrt 2
  # normalize=True divides by E||x||_2 of N(0, I_d) = sqrt(d).
  got = obj.lp_regularizer([a, b], p=2.0, dim=2)
  assert float(got) == pytest.approx((3.0 + math.sqrt(2)) / math.sqrt(2), rel=1e-6)
  assert float(obj.lp_regularizer([a], p=1.0, normalize=False)) == pytest.approx((7 + 1) / 2)
  assert obj.expected_lp_norm(1.0, 4) == pytest.approx(4 * math.sqrt(2 / math.pi))


def test_slcwa_dispatch_rejects_bad_names():
  with pytest.raises(ValueError, match="unknown loss"):
    obj.slcwa_loss("hinge", jnp.zeros(2), jnp.zeros((2, 1)))
  with pytest.raises(ValueError, match="unknown"):
    obj.slcwa_loss("softplus", jnp.zeros(2), jnp.zeros((2, 1)), margin=1.0)
  with pytest.raises(ValueError, match="shapes"):
    obj.nssa(jnp.zeros(2), jnp.zeros(2))


def test_basic_corruption():
  n = 7
  triples = jnp.array([[0, 1, 2], [3, 0, 4], [6, 2, 5], [1, 1, 1]], jnp.int32)
  neg = np.asarray(obj.corrupt_basic(jax.random.key(0), triples, 3, n))
  assert neg.shape == (4, 3, 3)
  flat, orig = neg.reshape(-1, 3), np.repeat(np.asarray(triples), 3, axis=0)
  np.testing.assert_array_equal(flat[:, 1], orig[:, 1])
  head = np.arange(12) < 6  # first half of the repeated batch: heads, rest: tails
  np.testing.assert_array_equal(flat[head, 2], orig[head, 2])
  np.testing.assert_array_equal(flat[~head, 0], orig[~head, 0])
  assert (flat[head, 0] != orig[head, 0]).all() and (flat[~head, 2] != orig[~head, 2]).all()
  assert ((flat >= 0) & (flat < n)).all()
  # Uniform over the other entities: many draws of one triple's head.
  many = np.asarray(obj.corrupt_basic(jax.random.key(1), jnp.array([[3, 0, 3]]), 14000, n))
  heads = many[0, :7000, 0]
  counts = np.bincount(heads, minlength=n)
  assert counts[3] == 0
  np.testing.assert_allclose(counts[np.arange(n) != 3] / 7000, 1 / 6, atol=0.02)


def test_bernoulli_corruption_and_probabilities():
  # relation 0: one head, 3 tails (tph 3, hpt 1) -> head prob 3/4; relation 1: 1-1 -> 1/2.
  train = np.array([[0, 0, 1], [0, 0, 2], [0, 0, 3], [4, 1, 5]])
  prob = obj.bernoulli_head_probability(train, 3)
  np.testing.assert_allclose(prob, [0.75, 0.5, 0.5])
  triples = jnp.array([[0, 0, 1]] * 4000, jnp.int32)
  neg = np.asarray(obj.corrupt_bernoulli(jax.random.key(0), triples, 2, 6, jnp.asarray(prob)))
  head_changed = neg[..., 0] != 0
  tail_changed = neg[..., 2] != 1
  assert (head_changed ^ tail_changed).all()
  assert abs(head_changed.mean() - 0.75) < 0.02
