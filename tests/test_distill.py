"""Distillation losses (score KL, token relationship graph) against float64 loop references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxemb.objectives import distill

TOL = 2e-5


def _lse(xs):
  m = max(xs)
  return m + math.log(sum(math.exp(x - m) for x in xs))


def _kl(student_row, teacher_row):
  ls, lt = _lse(student_row), _lse(teacher_row)
  return sum(math.exp(t - lt) * ((t - lt) - (s - ls)) for s, t in zip(student_row, teacher_row))


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _rand(seed, *shape):
  return np.asarray(np.random.default_rng(seed).normal(size=shape), np.float32)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def ref_score_kl(q, d, teacher, temp, t_temp, hard=None):
  q, d = np.asarray(q, np.float64), np.asarray(d, np.float64)
  cands = list(d) + ([] if hard is None else [h for row in hard for h in row])
  total = 0.0
  for i in range(len(q)):
    s = [float(q[i] @ c) / temp for c in cands]
    t = [float(x) / t_temp for x in teacher[i]]
    total += _kl(s, t)
  return temp**2 * total / len(q)


@pytest.mark.parametrize("with_hard,t_temp", [(False, None), (True, 0.1)])
def test_score_kl_matches_reference(with_hard, t_temp):
  q, d = _unit(_rand(0, 6, 8)), _unit(_rand(1, 6, 8))
  hard = _unit(_rand(2, 6, 2, 8)) if with_hard else None
  tq, td = _unit(_rand(3, 6, 12)), _unit(_rand(4, 6, 12))
  th = _unit(_rand(5, 6, 2, 12)) if with_hard else None
  cands_t = np.concatenate([td] + ([th.reshape(-1, 12)] if with_hard else []))
  teacher = tq @ cands_t.T
  loss, metrics = jax.jit(lambda q, d, t, h: distill.score_kl(
      q, d, t, temperature=0.05, teacher_temperature=t_temp, hard_negatives=h))(
          q, d, teacher, hard)
  expected = ref_score_kl(q, d, teacher, 0.05, t_temp or 0.05, hard)
  np.testing.assert_allclose(loss, expected, rtol=TOL, atol=1e-7)
  s = q @ np.concatenate([d] + ([hard.reshape(-1, 8)] if with_hard else [])).T
  agree = np.mean(np.argmax(s, -1) == np.argmax(teacher, -1))
  np.testing.assert_allclose(metrics["teacher_agreement"], agree)


def test_score_kl_is_zero_for_the_teacher_itself_and_teacher_gets_no_gradient():
  q, d = _unit(_rand(6, 5, 8)), _unit(_rand(7, 5, 8))
  teacher = q @ d.T
  loss, _ = distill.score_kl(q, d, teacher, temperature=0.05)
  assert abs(float(loss)) < 1e-6
  g = jax.grad(lambda t: distill.score_kl(q * 0.9, d, t)[0])(jnp.asarray(teacher))
  assert float(jnp.max(jnp.abs(g))) == 0.0


def test_score_kl_bad_shapes():
  q = jnp.ones((4, 8))
  with pytest.raises(ValueError, match=r"teacher_scores must have shape \(4, 4\)"):
    distill.score_kl(q, q, jnp.ones((4, 5)))
  with pytest.raises(ValueError, match="temperature must be > 0"):
    distill.score_kl(q, q, jnp.ones((4, 4)), temperature=0.0)


def ref_trg(s, t, mask, wn, we, tn, te):
  b, length = mask.shape
  node_sum, node_n, edge_sum, edge_n = 0.0, 0, 0.0, 0
  for bi in range(b):
    valid = [i for i in range(length) if mask[bi, i]]
    for i in valid:
      row = [_cos(s[bi, i], t[bi, j]) / tn for j in valid] if wn else None
      if wn:
        node_sum += _lse(row) - row[valid.index(i)]
      node_n += 1
      others = [j for j in valid if j != i]
      if others:
        s_row = [_cos(s[bi, i], s[bi, j]) / te for j in others]
        t_row = [_cos(t[bi, i], t[bi, j]) / te for j in others]
        edge_sum += _kl(s_row, t_row)
        edge_n += 1
  node = node_sum / max(node_n, 1)
  edge = edge_sum / max(edge_n, 1)
  return wn * node + we * edge, node, edge


@pytest.mark.parametrize("same_width,wn,we,tn,te", [
    (True, 1.0, 1.0, 0.1, 0.1), (True, 0.5, 2.0, 0.2, 0.05), (False, 0.0, 1.0, 0.1, 0.1)])
def test_trg_matches_reference(same_width, wn, we, tn, te):
  s = _rand(10, 3, 6, 8)
  t = _rand(11, 3, 6, 8 if same_width else 12)
  # Sequence 2 has one real token: no edges, one node.
  mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], bool)
  loss, metrics = jax.jit(lambda s, t, m: distill.trg_loss(
      s, t, m, node_weight=wn, edge_weight=we, node_temperature=tn, edge_temperature=te))(
          s, t, mask)
  expected, node, edge = ref_trg(s, t, mask, wn, we, tn, te)
  np.testing.assert_allclose(metrics["node"], node, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(metrics["edge"], edge, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-6)
  assert edge > 0


def test_trg_padding_does_not_matter_and_grads_are_finite():
  s, t = _rand(12, 2, 5, 8), _rand(13, 2, 5, 8)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)
  s2 = s.copy()
  s2[~mask] = 1e3  # junk in padded positions
  value_and_grad = jax.jit(jax.value_and_grad(lambda x: distill.trg_loss(x, t, mask)[0]))
  a, g = value_and_grad(s)
  b, _ = value_and_grad(s2)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  assert bool(jnp.all(jnp.isfinite(g)))
  assert float(jnp.max(jnp.abs(g[~mask]))) == 0.0


def test_trg_bad_input():
  s, t = jnp.ones((2, 4, 8)), jnp.ones((2, 4, 6))
  with pytest.raises(ValueError, match="the node term needs equal widths"):
    distill.trg_loss(s, t, jnp.ones((2, 4), bool))
  with pytest.raises(ValueError, match=r"mask must have shape \(2, 4\)"):
    distill.trg_loss(s, s, jnp.ones((2, 5), bool))
  with pytest.raises(ValueError, match="must agree on"):
    distill.trg_loss(s, jnp.ones((2, 3, 8)), jnp.ones((2, 4), bool))
