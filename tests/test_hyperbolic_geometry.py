"""Poincaré ball and Lorentz model ops against closed forms written out in float64 numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxemb.geometry import lorentz, poincare as pb

CURVATURES = [1.0, 0.3, 2.5]


def _points(rng, n, d, c, max_r=0.9):
  """n random points of the c-ball with radius up to max_r of the ball's radius."""
  v = rng.normal(size=(n, d))
  v /= np.linalg.norm(v, axis=-1, keepdims=True)
  r = rng.uniform(0, max_r, size=(n, 1)) / np.sqrt(c)
  return v * r


def _np_mobius_add(x, y, c):
  xy = (x * y).sum(-1, keepdims=True)
  x2, y2 = (x * x).sum(-1, keepdims=True), (y * y).sum(-1, keepdims=True)
  return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c * c * x2 * y2)


def _np_dist_arccosh(x, y, c):
  x2, y2 = (x * x).sum(-1), (y * y).sum(-1)
  return np.arccosh(1 + 2 * c * ((x - y) ** 2).sum(-1) / ((1 - c * x2) * (1 - c * y2))) / np.sqrt(c)


def _np_lambda(x, c):
  return 2 / (1 - c * (x * x).sum(-1, keepdims=True))


@pytest.mark.parametrize("c", CURVATURES)
def test_distance_matches_arccosh_and_artanh_forms_float64(c):
  rng = np.random.default_rng(0)
  x, y = _points(rng, 64, 5, c, 0.999), _points(rng, 64, 5, c, 0.999)
  with jax.enable_x64(True):
    got = np.asarray(pb.dist(jnp.asarray(x), jnp.asarray(y), c))
  np.testing.assert_allclose(got, _np_dist_arccosh(x, y, c), rtol=1e-10)
  # Independent second form: 2/√c artanh(√c‖-x ⊕ y‖).
  sub = _np_mobius_add(-x, y, c)
  np.testing.assert_allclose(
      got, 2 / np.sqrt(c) * np.arctanh(np.sqrt(c) * np.linalg.norm(sub, axis=-1)), rtol=1e-8)


def test_mobius_add_identities_and_scalar_mul():
  rng = np.random.default_rng(1)
  c = 0.7
  x, y = _points(rng, 16, 4, c), _points(rng, 16, 4, c)
  with jax.enable_x64(True):
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    np.testing.assert_allclose(pb.mobius_add(jx, jy, c), _np_mobius_add(x, y, c), rtol=1e-12)
    np.testing.assert_allclose(pb.mobius_add(-jx, jx, c), 0, atol=1e-14)
    # 2 ⊗ x = x ⊕ x; r ⊗ x scales the distance from 0 by r.
    np.testing.assert_allclose(pb.mobius_scalar_mul(2.0, jx, c), pb.mobius_add(jx, jx, c),
                               rtol=1e-10)
    r = jnp.asarray(rng.uniform(0.1, 3, size=16))
    np.testing.assert_allclose(pb.dist0(pb.mobius_scalar_mul(r, jx, c), c),
                               r * pb.dist0(jx, c), rtol=1e-10)
    # Gyration closed form == its definition ⊖(u ⊕ v) ⊕ (u ⊕ (v ⊕ w)).
    w = jnp.asarray(rng.normal(size=(16, 4)))
    ref = _np_mobius_add(-_np_mobius_add(x, y, c),
                         _np_mobius_add(x, _np_mobius_add(y, np.asarray(w) * 0.01, c), c), c)
    np.testing.assert_allclose(pb.gyration(jx, jy, w * 0.01, c), ref, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("c", CURVATURES)
def test_exp_log_inverse_and_geodesic_length(c):
  rng = np.random.default_rng(2)
  x, y = _points(rng, 32, 6, c, 0.99), _points(rng, 32, 6, c, 0.99)
  with jax.enable_x64(True):
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    v = pb.logmap(jx, jy, c)
    np.testing.assert_allclose(pb.expmap(jx, v, c), y, rtol=1e-9, atol=1e-12)
    # ‖log_x(y)‖_x = d(x, y): the metric norm of the log is the geodesic distance.
    np.testing.assert_allclose(np.sqrt(pb.inner(jx, v, c=c)), _np_dist_arccosh(x, y, c),
                               rtol=1e-9)
    np.testing.assert_allclose(pb.expmap0(pb.logmap0(jy, c), c), y, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pb.expmap(jnp.zeros_like(jx), v, c), pb.expmap0(v, c),
                               rtol=1e-12)
    # exp_0 closed form.
    u = rng.normal(size=(32, 6))
    nu = np.linalg.norm(u, axis=-1, keepdims=True)
    np.testing.assert_allclose(pb.expmap0(jnp.asarray(u), c),
                               np.tanh(np.sqrt(c) * nu) * u / (np.sqrt(c) * nu), rtol=1e-12)


@pytest.mark.parametrize("c", CURVATURES)
def test_parallel_transport_preserves_metric_norm(c):
  rng = np.random.default_rng(3)
  x, y = _points(rng, 32, 5, c, 0.95), _points(rng, 32, 5, c, 0.95)
  u, w = rng.normal(size=(32, 5)), rng.normal(size=(32, 5))
  with jax.enable_x64(True):
    jx, jy, ju, jw = map(jnp.asarray, (x, y, u, w))
    tu, tw = pb.transp(jx, jy, ju, c), pb.transp(jx, jy, jw, c)
    # Inner products (hence norms and angles) are preserved: λ_y²⟨Pu, Pw⟩ = λ_x²⟨u, w⟩.
    np.testing.assert_allclose(pb.inner(jy, tu, tw, c), (_np_lambda(x, c) ** 2)[:, 0]
                               * (u * w).sum(-1), rtol=1e-9)
    # Transport moves log_x(y) to -log_y(x) (the geodesic's velocity).
    np.testing.assert_allclose(pb.transp(jx, jy, pb.logmap(jx, jy, c), c),
                               -pb.logmap(jy, jx, c), rtol=1e-8, atol=1e-12)
    zero = jnp.zeros_like(jx)
    np.testing.assert_allclose(pb.transp0(jy, ju, c), pb.transp(zero, jy, ju, c), rtol=1e-10)
    np.testing.assert_allclose(pb.transp0back(jx, ju, c), pb.transp(jx, zero, ju, c),
                               rtol=1e-10)


@pytest.mark.parametrize("c", CURVATURES)
def test_weighted_midpoint(c):
  rng = np.random.default_rng(4)
  x, y = _points(rng, 8, 3, c, 0.95), _points(rng, 8, 3, c, 0.95)
  with jax.enable_x64(True):
    pts = jnp.stack([jnp.asarray(x), jnp.asarray(y)])  # [2, 8, 3]
    m = pb.weighted_midpoint(pts, c=c, axis=0)
    d = _np_dist_arccosh(x, y, c)
    np.testing.assert_allclose(_np_dist_arccosh(x, np.asarray(m), c), d / 2, rtol=1e-8)
    np.testing.assert_allclose(_np_dist_arccosh(np.asarray(m), y, c), d / 2, rtol=1e-8)
    # Weights (1, 0) give x itself.
    np.testing.assert_allclose(pb.weighted_midpoint(pts, jnp.asarray([1.0, 0.0])[:, None], c),
                               x, rtol=1e-10, atol=1e-14)
    # Permutation invariance and equivariance under Möbius translation (gyro midpoint).
    many = jnp.asarray(_points(rng, 5, 3, c, 0.9))[:, None]  # [5, 1, 3]
    w = jnp.asarray(rng.uniform(0.1, 1, size=(5, 1)))
    m5 = pb.weighted_midpoint(many, w, c)
    np.testing.assert_allclose(pb.weighted_midpoint(many[::-1], w[::-1], c), m5, rtol=1e-10)
    a = jnp.asarray(_points(rng, 1, 3, c, 0.5))
    np.testing.assert_allclose(pb.weighted_midpoint(pb.mobius_add(a, many, c), w, c),
                               pb.mobius_add(a, m5, c), rtol=1e-8, atol=1e-12)
  with pytest.raises(ValueError, match="axis"):
    pb.weighted_midpoint(jnp.zeros((2, 3)), axis=-1)


def test_project_margin_and_bad_curvature():
  for dtype, eps in ((jnp.float32, 1e-5), (jnp.float64, 1e-10)):
    with jax.enable_x64(True):
      x = jnp.asarray([[3.0, 4.0], [0.1, 0.2]], dtype)
      for c in (1.0, 4.0):
        p = pb.project(x, c)
        n = np.linalg.norm(np.asarray(p, np.float64), axis=-1)
        assert n[0] <= 1 / np.sqrt(c) and n[0] >= (1 - 2 * eps) / np.sqrt(c)
        np.testing.assert_array_equal(p[1], x[1])
        assert np.all(np.isfinite(np.asarray(pb.lambda_x(p, c))))
  with pytest.raises(ValueError, match="curvature c must be > 0"):
    pb.dist(jnp.zeros(2), jnp.zeros(2), c=-1.0)
  with pytest.raises(ValueError, match="curvature c must be > 0"):
    lorentz.dist(jnp.zeros(3), jnp.zeros(3), c=0.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_finite_at_the_boundary(dtype):
  rng = np.random.default_rng(5)
  c = 1.0
  with jax.enable_x64(True):
    x = pb.project(jnp.asarray(rng.normal(size=(16, 5)) * 10, dtype), c)  # on the margin
    y = pb.project(jnp.asarray(rng.normal(size=(16, 5)) * 10, dtype), c)
    v = jnp.asarray(rng.normal(size=(16, 5)), dtype)
    fns = {
        "dist": lambda a, b: pb.dist(a, b, c).sum(),
        "dist_same": lambda a, b: pb.dist(a, a, c).sum(),
        "dist0": lambda a, b: pb.dist0(a, c).sum(),
        "mobius_add": lambda a, b: pb.mobius_add(a, b, c).sum(),
        "logmap": lambda a, b: pb.logmap(a, b, c).sum(),
        "logmap0": lambda a, b: pb.logmap0(a, c).sum(),
        "expmap": lambda a, b: (pb.expmap(a, v[:len(a)] * 1e3, c).sum()
                                + pb.expmap(a, v[:len(a)] * 0, c).sum()),
        "transp": lambda a, b: pb.transp(a, b, v[:len(a)], c).sum(),
        "scalar_mul": lambda a, b: pb.mobius_scalar_mul(0.5, a, c).sum(),
        "midpoint": lambda a, b: pb.weighted_midpoint(jnp.stack([a, b]), c=c).sum(),
        "project": lambda a, b: pb.project(a * 2, c).sum(),
        "lorentz_dist": lambda a, b: lorentz.dist(lorentz.from_poincare(a, c),
                                                  lorentz.from_poincare(b, c), c).sum(),
    }
    # One jit for all gradients (one compile instead of hundreds of eager dispatches).
    grads = jax.jit(lambda a, b: {n: jax.grad(f, argnums=(0, 1))(a, b)
                                  for n, f in fns.items()})
    at_origin = ("dist_same", "dist0", "logmap0", "scalar_mul", "expmap")
    z = jnp.zeros((16, 5), dtype)  # zero norms everywhere
    for points, names in (((x, y), fns), ((z, z), at_origin)):
      got = grads(*points)
      for name in names:
        ga, gb = got[name]
        assert ga.dtype == jnp.dtype(dtype)
        assert np.all(np.isfinite(np.asarray(ga))) and np.all(np.isfinite(np.asarray(gb))), name
    # Distances stay accurate at the margin in this dtype (vs float64 closed form): in
    # float32, 1 - ‖x‖² ≈ 2e-5 carries ~3 digits, so d ≈ 23 is good to ~1e-4 relative.
    xd, yd = np.asarray(x, np.float64), np.asarray(y, np.float64)
    np.testing.assert_allclose(np.asarray(pb.dist(x, y, c), np.float64),
                               _np_dist_arccosh(xd, yd, c), rtol=3e-4 if dtype == "float32"
                               else 1e-10)


@pytest.mark.parametrize("c", CURVATURES)
def test_lorentz_maps_and_distance(c):
  rng = np.random.default_rng(6)
  x, y = _points(rng, 32, 4, c, 0.99), _points(rng, 32, 4, c, 0.99)
  with jax.enable_x64(True):
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    lx, ly = lorentz.from_poincare(jx, c), lorentz.from_poincare(jy, c)
    np.testing.assert_allclose(lorentz.minkowski_inner(lx, lx), -1 / c, rtol=1e-9)
    assert np.all(np.asarray(lx[..., 0]) > 0)
    np.testing.assert_allclose(lorentz.to_poincare(lx, c), x, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(lorentz.dist(lx, ly, c), _np_dist_arccosh(x, y, c), rtol=1e-8)
    v = lorentz.logmap(lx, ly, c)
    np.testing.assert_allclose(lorentz.minkowski_inner(lx, v), 0, atol=1e-9)  # tangent
    np.testing.assert_allclose(lorentz.expmap(lx, v, c), ly, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.sqrt(lorentz.minkowski_inner(v, v)),
                               _np_dist_arccosh(x, y, c), rtol=1e-8)
    # The maps commute with exp at the origin: the isometry's differential at the origin
    # halves vectors (λ_0 = 2), so Lorentz exp_o((0, u)) ↔ Poincaré exp_0(u / 2).
    u = jnp.asarray(rng.normal(size=(32, 4)))
    lu = jnp.concatenate([jnp.zeros((32, 1)), u], -1)
    np.testing.assert_allclose(lorentz.to_poincare(lorentz.expmap0(lu, c), c),
                               pb.expmap0(u / 2, c), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lorentz.logmap0(lorentz.expmap0(lu, c), c), lu, rtol=1e-8,
                               atol=1e-10)
    # Transport keeps tangency and the Minkowski norm.
    w = lorentz.proj_tangent(lx, jnp.asarray(rng.normal(size=(32, 5))), c)
    tw = lorentz.transp(lx, ly, w, c)
    np.testing.assert_allclose(lorentz.minkowski_inner(ly, tw), 0, atol=1e-8)
    np.testing.assert_allclose(lorentz.minkowski_inner(tw, tw), lorentz.minkowski_inner(w, w),
                               rtol=1e-8)
    # project() puts an off-manifold point back on the sheet.
    np.testing.assert_allclose(lorentz.minkowski_inner(*(2 * [lorentz.project(lx * 1.1, c)])),
                               -1 / c, rtol=1e-9)
