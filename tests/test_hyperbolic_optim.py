"""Riemannian SGD / Adam (optax) against geoopt's stored trajectories, and the param splitter."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxemb.geometry import poincare
from jaxemb.optimizers import riemannian as rm

REF = pathlib.Path(__file__).parent / "data" / "geoopt_optim.npz"  # make_geoopt_reference.py


def _tx(case, **extra):
  c = case["c"]
  ball = rm.PoincareBall(c, eps=1e-5)  # geoopt's float64 margin
  if case["opt"] == "sgd":
    return rm.riemannian_sgd(case["lr"], ball, momentum=case.get("momentum", 0.0),
                             dampening=case.get("dampening", 0.0),
                             weight_decay=case.get("weight_decay", 0.0),
                             nesterov=case.get("nesterov", False), **extra)
  b1, b2 = case.get("betas", (0.9, 0.999))
  return rm.riemannian_adam(case["lr"], ball, b1=b1, b2=b2,
                            weight_decay=case.get("weight_decay", 0.0),
                            amsgrad=case.get("amsgrad", False), **extra)


@pytest.mark.parametrize("name", ["rsgd", "rsgd_momentum", "rsgd_nesterov", "radam",
                                  "radam_amsgrad"])
def test_matches_geoopt_trajectory(name):
  ref = np.load(REF)
  case = json.loads(str(ref[f"{name}/case"]))
  with jax.enable_x64(True):
    tx = _tx(case)
    x = {"points": jnp.asarray(ref[f"{name}/x0"])}
    state = tx.init(x)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    for t, (g, want) in enumerate(zip(ref[f"{name}/grads"], ref[f"{name}/traj"])):
      updates, state = step({"points": jnp.asarray(g)}, state, x)
      x = optax.apply_updates(x, updates)
      np.testing.assert_allclose(x["points"], want, rtol=1e-9, atol=1e-12,
                                 err_msg=f"{name} step {t}")


def test_float32_close_to_geoopt_and_exp_map_variant():
  ref = np.load(REF)
  case = json.loads(str(ref["radam/case"]))
  tx = _tx(case)
  x = jnp.asarray(ref["radam/x0"], jnp.float32)
  state = tx.init(x)
  for g in ref["radam/grads"]:
    u, state = tx.update(jnp.asarray(g, jnp.float32), state, x)
    x = x + u
  np.testing.assert_allclose(x, ref["radam/traj"][-1], rtol=1e-4, atol=1e-5)
  # The exp-map step differs from the retraction at second order only: one small step.
  with jax.enable_x64(True):
    x0 = jnp.asarray(ref["rsgd/x0"])
    g = jnp.asarray(ref["rsgd/grads"][0]) * 1e-3
    r = rm.riemannian_sgd(1.0, rm.PoincareBall(1.0), retraction="retr")
    e = rm.riemannian_sgd(1.0, rm.PoincareBall(1.0), retraction="exp")
    ur, _ = r.update(g, r.init(x0), x0)
    ue, _ = e.update(g, e.init(x0), x0)
    want = poincare.expmap(x0, -poincare.egrad2rgrad(x0, g))
    np.testing.assert_allclose(x0 + ue, want, rtol=1e-12)
    scale = float(np.abs(ue).max())
    np.testing.assert_allclose(ur, ue, atol=1e-3 * scale)  # second-order difference
    assert np.abs(np.asarray(ur - ue)).max() > 1e-8 * scale


def test_rsgd_is_nickel_kiela_update_and_stays_in_ball():
  # Nickel & Kiela 2017: x ← proj(x - lr (1 - ‖x‖²)²/4 ∇), proj to ‖x‖ ≤ 1 - 1e-5.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-0.5, 0.5, (10, 5)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(10, 5)) * 50, jnp.float32)
  tx = rm.riemannian_sgd(0.3, rm.PoincareBall(1.0))
  u, _ = tx.update(g, tx.init(x), x)
  xn, gn = np.asarray(x, np.float64), np.asarray(g, np.float64)
  want = xn - 0.3 * (1 - (xn ** 2).sum(-1, keepdims=True)) ** 2 / 4 * gn
  norm = np.linalg.norm(want, axis=-1, keepdims=True)
  want = np.where(norm > 1 - 1e-5, want / norm * (1 - 1e-5), want)
  np.testing.assert_allclose(x + u, want, rtol=1e-5, atol=1e-6)
  assert np.all(np.linalg.norm(np.asarray(x + u), axis=-1) < 1)


def test_partition_applies_riemannian_only_to_marked_params():
  params = {"points": jnp.full((4, 2), 0.5), "dense": {"w": jnp.ones((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = rm.partition(rm.riemannian_sgd(0.1), optax.sgd(0.1), rm.path_has("points"))
  assert rm.manifold_labels(params, rm.path_has("points")) == {
      "points": "manifold", "dense": {"w": "euclidean"}}
  u, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(u["dense"]["w"], -0.1)
  lam2 = (2 / (1 - 0.5)) ** 2  # λ_x² at ‖x‖² = 0.5
  np.testing.assert_allclose(u["points"], -0.1 / lam2, rtol=1e-6)


def test_schedule_and_bad_arguments():
  x = jnp.full((1, 2), 0.1)
  g = jnp.ones((1, 2))
  tx = rm.riemannian_sgd(optax.piecewise_constant_schedule(0.1, {1: 10.0}), rm.Euclidean())
  s = tx.init(x)
  u0, s = tx.update(g, s, x)
  u1, s = tx.update(g, s, x)
  np.testing.assert_allclose(u0, -0.1, rtol=1e-6)
  np.testing.assert_allclose(u1, -1.0, rtol=1e-6)
  with pytest.raises(ValueError, match="needs params"):
    tx.update(g, s)
  with pytest.raises(ValueError, match="retraction must be"):
    rm.riemannian_sgd(0.1, retraction="cayley")
  with pytest.raises(ValueError, match="curvature c must be > 0"):
    rm.PoincareBall(-1.0)
  with pytest.raises(ValueError, match="momentum must be"):
    rm.riemannian_sgd(0.1, momentum=1.5)
