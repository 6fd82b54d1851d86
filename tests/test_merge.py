"""Model merging: TIES and TSV on hand-made cases, closed forms vs numpy, learned coefficients
recovering a known optimum, identical models, zero aTLAS coefficients, bad inputs, and
`jaxemb merge`."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxemb
from jaxemb.adapt import merge
from jaxemb.evaluate.registry import Task
from jaxemb.functional import split
from jaxemb.model import EmbeddingModel
from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder
from tiny_tokenizer import tiny_tokenizer


def _tree(a, b):
  return {"a": np.asarray(a, np.float32), "layer": {"b": np.asarray(b, np.float32)}}


BASE = _tree([1, 1, 1, 1], [[1, 1], [1, 1]])
# Task vectors chosen so no two magnitudes tie at the trim threshold.
TAUS = [_tree([3, -1, 0.5, 2], [[-4, 0.2], [0.9, 0]]),
        _tree([-2, 2.5, -0.1, 1], [[3, -3.5], [0.3, 5]]),
        _tree([1, -3, 0.2, -0.5], [[-1.5, 0.1], [-2, 4]])]
MODELS = [jax.tree.map(lambda b, t: b + t, BASE, tau) for tau in TAUS]


def _close(tree, expected, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), y, **kw), tree, expected)


def test_ties_hand_made_global_trim():
  # density 0.5 of 8 entries: each task keeps its 4 largest magnitudes.
  #   trimmed tau1: a [3,-1,0,2]    b [[-4,0],[0,0]]
  #   trimmed tau2: a [0,2.5,0,0]   b [[3,-3.5],[0,5]]
  #   trimmed tau3: a [0,-3,0,0]    b [[-1.5,0],[-2,4]]
  # elected signs (sign of the sums) a [+,-,0,+] b [[-,-],[-,+]]; mean of the agreeing entries:
  #   a [3, (-1-3)/2, 0, 2]  b [[(-4-1.5)/2, -3.5], [-2, (5+4)/2]]
  merged = merge.ties(BASE, MODELS, density=0.5)
  _close(merged, _tree(np.add(1, [3, -2, 0, 2]), np.add(1, [[-2.75, -3.5], [-2, 4.5]])),
         rtol=1e-6)


def test_ties_hand_made_per_tensor_trim_and_scale():
  # Per tensor (2 of 4 entries each):
  #   tau1: a [3,0,0,2]  b [[-4,0],[0.9,0]];  tau2: a [-2,2.5,0,0]  b [[0,-3.5],[0,5]];
  #   tau3: a [1,-3,0,0] b [[0,0],[-2,4]]
  # a0: sum 2 > 0 -> mean(3, 1) = 2; a1: sum -0.5 -> -3; b10: sum -1.1 -> -2; b11: 4.5.
  merged = merge.ties(BASE, MODELS, density=0.5, scope="tensor", lam=0.5)
  _close(merged, _tree(np.add(1, 0.5 * np.array([2, -3, 0, 2])),
                       np.add(1, 0.5 * np.array([[-4, -3.5], [-2, 4.5]]))), rtol=1e-6)


def test_average_and_task_arithmetic_vs_numpy():
  _close(merge.average(MODELS), jax.tree.map(lambda *xs: np.mean(xs, axis=0), *MODELS),
         rtol=1e-6)
  lam = [0.5, -1.0, 2.0]
  expected = jax.tree.map(lambda b, *ts: b + sum(l * t for l, t in zip(lam, ts)), BASE, *TAUS)
  _close(merge.task_arithmetic(BASE, MODELS, lam), expected, rtol=1e-6)
  _close(merge.task_arithmetic(BASE, MODELS, 0.3),
         jax.tree.map(lambda b, *ts: b + 0.3 * sum(ts), BASE, *TAUS), rtol=1e-6)


def test_identical_models_merge_to_that_model():
  m = MODELS[0]
  same = [m, m, m]
  _close(merge.average(same), m, rtol=1e-6)
  _close(merge.task_arithmetic(BASE, same, 1 / 3), m, rtol=1e-6)
  _close(merge.ties(BASE, same, density=1.0), m, rtol=1e-6)
  loss = lambda p, step: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  _close(merge.self_positioning(BASE, same, loss, steps=0).params, m, rtol=1e-6)
  _close(merge.atlas(BASE, same, loss, steps=0, init=1 / 3).params, m, rtol=1e-6)


def _rank1(s, angle_u, angle_v):
  u = np.array([np.cos(angle_u), np.sin(angle_u)])
  v = np.array([np.cos(angle_v), np.sin(angle_v)])
  return s * np.outer(u, v)


def test_tsv_hand_made_decorrelation():
  # Two rank-1 task vectors on a 2x2 matrix (k = 2 // 2 = 1 triplet each). Left vectors at 0
  # and 60 degrees: the nearest orthonormal pair to unit columns symmetric about their bisector
  # (30 degrees) lies at 30 -/+ 45 degrees. Right vectors at 0 and 90 degrees are orthogonal
  # already and stay. The bias (not a matrix) takes the mean of the two task vectors.
  deg = np.pi / 180
  base = {"w": np.zeros((2, 2), np.float32), "b": np.ones(2, np.float32)}
  taus = [{"w": _rank1(3.0, 0, 0), "b": np.array([2.0, 0.0])},
          {"w": _rank1(1.0, 60 * deg, 90 * deg), "b": np.array([0.0, 4.0])}]
  models = [jax.tree.map(lambda b, t: (b + t).astype(np.float32), base, t) for t in taus]
  expected = {"w": 0.5 * (_rank1(3.0, -15 * deg, 0) + _rank1(1.0, 75 * deg, 90 * deg)),
              "b": 1 + 0.5 * np.array([1.0, 2.0])}
  _close(merge.tsv(base, models, lam=0.5), expected, rtol=1e-5, atol=1e-6)
  _close(merge.merge_params(base, models, "tsv", lam=0.5), expected, rtol=1e-5, atol=1e-6)


def test_tsv_orthogonal_low_rank_task_vectors_add_and_higher_ranks_are_cut():
  # 8x8 matrices, two tasks: k = 4 triplets each. Task 1 lives on coordinates 0-4 (rank 5: its
  # fifth direction is cut), task 2 on a rotated copy of coordinates 4-7 (rank 4: kept whole).
  # Their kept singular vectors are orthonormal together, so nothing is rotated: the merge is
  # task 1 cut to rank 4 plus task 2 (task arithmetic of the cut vectors).
  rng = np.random.default_rng(0)
  tau1 = np.diag([5.0, 4, 3, 2, 1, 0, 0, 0])
  q_left = np.linalg.qr(rng.normal(size=(4, 4)))[0]
  q_right = np.linalg.qr(rng.normal(size=(4, 4)))[0]
  tau2 = np.zeros((8, 8))
  tau2[4:, 4:] = q_left @ np.diag([6.0, 1.5, 0.7, 0.2]) @ q_right.T
  base = {"w": rng.normal(size=(8, 8)).astype(np.float32)}
  models = [{"w": (base["w"] + t).astype(np.float32)} for t in (tau1, tau2)]
  cut1 = np.diag([5.0, 4, 3, 2, 0, 0, 0, 0])
  _close(merge.tsv(base, models), {"w": base["w"] + cut1 + tau2}, rtol=1e-5, atol=1e-5)
  # A zero task vector (a model equal to the base) leaves the other's directions alone.
  _close(merge.tsv(base, [models[0], base]), {"w": base["w"] + cut1}, rtol=1e-5, atol=1e-5)


def test_tsv_identical_low_rank_models_merge_to_that_model():
  # [U, U, U] / sqrt(3) is the nearest orthonormal matrix to [U, U, U]: each copy adds a third.
  rng = np.random.default_rng(1)
  base = {"w": rng.normal(size=(6, 9)).astype(np.float32), "b": np.zeros(9, np.float32)}
  low_rank = rng.normal(size=(6, 2)) @ rng.normal(size=(2, 9))   # rank 2 = 6 // 3
  m = {"w": (base["w"] + low_rank).astype(np.float32), "b": np.ones(9, np.float32)}
  _close(merge.tsv(base, [m, m, m]), m, rtol=1e-5, atol=1e-5)


def test_atlas_zero_coefficients_is_the_base():
  loss = lambda p, step: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  result = merge.atlas(BASE, MODELS, loss, steps=0)
  _close(result.params, BASE, rtol=0, atol=0)
  assert all(np.all(c == 0) for c in jax.tree.leaves(result.coefficients))
  zeros = jax.tree.map(lambda _: jnp.zeros(3), BASE)
  _close(merge.atlas_compose(BASE, merge.task_vectors(BASE, MODELS), zeros), BASE, atol=0)


def _quadratic_to(target):
  return lambda p, step: sum(jnp.sum((x - t)**2) for x, t in
                             zip(jax.tree.leaves(p), jax.tree.leaves(target)))


def test_self_positioning_recovers_known_coefficients():
  alpha = [0.3, 0.7, -0.2]
  target = jax.tree.map(lambda b, *ts: b + sum(a * t for a, t in zip(alpha, ts)), BASE, *TAUS)
  result = merge.self_positioning(BASE, MODELS, _quadratic_to(target), steps=400,
                                  tx=optax.adam(0.05))
  np.testing.assert_allclose(result.coefficients, alpha, atol=2e-3)
  assert result.losses[-1] < 1e-3 * result.losses[0]


def test_atlas_recovers_per_tensor_coefficients():
  # Different coefficients per tensor: only anisotropic scaling can reach the target exactly.
  coeffs = {"a": np.array([0.5, 0.0, 1.0]), "layer": {"b": np.array([-0.5, 0.25, 0.0])}}
  target = merge.atlas_compose(BASE, merge.task_vectors(BASE, MODELS),
                               jax.tree.map(jnp.asarray, coeffs))
  result = merge.atlas(BASE, MODELS, _quadratic_to(target), steps=400, tx=optax.adam(0.05))
  _close(result.coefficients, coeffs, atol=3e-3)
  iso = merge.self_positioning(BASE, MODELS, _quadratic_to(target), steps=400,
                               tx=optax.adam(0.05))
  assert result.losses[-1] < 0.01 * iso.losses[-1]


def test_bad_inputs():
  other = _tree([1, 1, 1], [[1, 1], [1, 1]])
  with pytest.raises(ValueError, match=r"parameter \['a'\] has shape \(3,\); expected \(4,\)"):
    merge.average([BASE, other])
  with pytest.raises(ValueError, match="different parameters"):
    merge.task_arithmetic(BASE, [{"a": BASE["a"]}])
  for method in ("task_arithmetic", "ties", "tsv", "self_positioning", "atlas"):
    with pytest.raises(ValueError, match=f"method '{method}' needs a base model"):
      merge.merge_params(None, MODELS, method)
  with pytest.raises(ValueError, match="method='soup'"):
    merge.merge_params(BASE, MODELS, "soup")
  with pytest.raises(ValueError, match="pass loss_fn"):
    merge.merge_params(BASE, MODELS, "atlas")
  with pytest.raises(ValueError, match="density=0"):
    merge.ties(BASE, MODELS, density=0)
  with pytest.raises(ValueError, match=r"tsv takes one scale lam, got \[1.0, 2.0\]"):
    merge.merge_params(BASE, MODELS, "tsv", lam=[1.0, 2.0])
  with pytest.raises(ValueError, match="lam has 2 values"):
    merge.task_arithmetic(BASE, MODELS, [1.0, 2.0])
  with pytest.raises(ValueError, match="models is empty"):
    merge.average([])


# ---------------------------------------------------------------------------------------------
# Embedding models and the CLI.


def _tiny(seed, hidden=32) -> EmbeddingModel:
  cfg = TransformerConfig(vocab_size=100, hidden_size=hidden, num_layers=1, num_heads=4,
                          intermediate_size=64, max_position_embeddings=16)
  rngs = nnx.Rngs(seed)
  module = SentenceEmbedder(TransformerEncoder(cfg, rngs=rngs),
                            Pooler("mean", hidden, rngs=rngs), normalize=True)
  return EmbeddingModel(module=module, tokenizer=tiny_tokenizer(), max_seq_length=16,
                        name=f"tiny{seed}")


TEXTS = ["a cat", "the dog barks", "x"]


def test_merge_models_identical_and_mismatched():
  a = _tiny(0)
  merged = merge.merge_models(a, [a, a], "task_arithmetic", lam=0.5)
  _close(split(merged.module)[1], split(a.module)[1], rtol=1e-6)
  assert merged.tokenizer is a.tokenizer and merged.name.startswith("merge:task_arithmetic")
  with pytest.raises(ValueError, match="needs a base model"):
    merge.merge_models(None, [a, a], "ties")
  with pytest.raises(ValueError, match="models of different shapes cannot be merged"):
    merge.merge_models(a, [_tiny(1, hidden=16)], "average")


def test_merge_cli_average_tsv_and_atlas(tmp_path, monkeypatch, capsys):
  dirs = [jaxemb.save_pretrained(_tiny(s), tmp_path / f"m{s}") for s in range(3)]
  parser = argparse.ArgumentParser()
  merge.add_merge_parser(parser.add_subparsers())

  def run(*argv):
    args = parser.parse_args(["merge", *map(str, argv)])
    args.func(args)
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

  out = tmp_path / "avg"
  summary = run("--base", dirs[0], "--models", dirs[1], dirs[2], "--method", "average",
                "--out", out)
  assert summary["method"] == "average"
  params = [split(jaxemb.load_pretrained(d).module)[1] for d in dirs]
  _close(split(jaxemb.load_pretrained(out).module)[1],
         jax.tree.map(lambda x, y: (np.asarray(x) + np.asarray(y)) / 2, params[1], params[2]),
         rtol=1e-5, atol=1e-6)

  out = tmp_path / "tsv"
  summary = run("--base", dirs[0], "--models", dirs[1], dirs[2], "--method", "tsv", "--lam",
                "0.7", "--out", out)
  assert summary["method"] == "tsv"
  _close(split(jaxemb.load_pretrained(out).module)[1],
         merge.tsv(params[0], params[1:], lam=0.7), rtol=1e-5, atol=1e-6)

  with pytest.raises(ValueError, match="needs --base"):
    run("--models", dirs[1], dirs[2], "--method", "ties", "--out", tmp_path / "x")
  with pytest.raises(ValueError, match="give --probe-task"):
    run("--base", dirs[0], "--models", dirs[1], "--method", "atlas", "--out", tmp_path / "x")
  with pytest.raises(ValueError, match="--method ties uses no probe"):
    run("--base", dirs[0], "--models", dirs[1], "--method", "ties", "--probe-task", "toy:train",
        "--out", tmp_path / "x")
  with pytest.raises(ValueError, match="2 probe weights"):
    run("--base", dirs[0], "--models", dirs[1], "--method", "atlas", "--probe-task", "toy:train",
        "--probe-weight", "1", "--probe-weight", "2", "--out", tmp_path / "x")

  data = {"queries": ["find a", "find b", "find c", "find d"],
          "corpus": ["def a", "def b", "def c", "def d"], "relevant": [{i} for i in range(4)]}
  task = Task(name="toy", load=lambda split, data_dir: data, evaluate=lambda e, d: {})
  from jaxemb import tasks
  monkeypatch.setattr(tasks, "parse", lambda spec, default_split="test": (task, "validation"))
  out = tmp_path / "atlas"
  summary = run("--base", dirs[0], "--models", dirs[1], dirs[2], "--method", "atlas",
                "--out", out, "--probe-task", "toy:validation", "--steps", "0",
                "--batch-size", "4")
  assert summary["coefficients"] == [0.0, 0.0] and summary["probe_loss"] == []
  # Zero steps from zero coefficients: the base model, written and read back.
  _close(split(jaxemb.load_pretrained(out).module)[1], params[0], rtol=1e-6, atol=1e-7)


def test_probe_weights_normalise_and_weight_the_probe_loss():
  assert merge.probe_weights(None, 4) == [0.25] * 4
  np.testing.assert_allclose(merge.probe_weights([3, 1], 2), [0.75, 0.25])
  with pytest.raises(ValueError, match=r"1 probe weights \[1.0\] for 2 probe tasks"):
    merge.probe_weights([1], 2)
  with pytest.raises(ValueError, match=r"probe weights \[-1.0, 2.0\]; expected non-negative"):
    merge.probe_weights([-1, 2], 2)
  with pytest.raises(ValueError, match="not all zero"):
    merge.probe_weights([0, 0], 2)
  base = _tiny(0)
  graph, params = split(base.module)
  first = merge.tokenize_pairs(base, ["find a", "find bb"], ["def a", "def bb"])
  second = merge.tokenize_pairs(base, ["x y", "z"], ["y y y", "w"])
  single = [merge.probe_loss(graph, [p], batch_size=2)(params, jnp.int32(0))
            for p in (first, second)]
  weighted = merge.probe_loss(graph, [first, second], batch_size=2, weights=[3, 1])
  np.testing.assert_allclose(weighted(params, jnp.int32(0)),
                             0.75 * single[0] + 0.25 * single[1], rtol=1e-5)
  balanced = merge.probe_loss(graph, [first, second], batch_size=2)
  np.testing.assert_allclose(balanced(params, jnp.int32(0)), np.mean(single), rtol=1e-5)


@pytest.mark.slow  # compiles the gradient through a transformer: ~10 s of CPU
def test_probe_loss_equals_info_nce_of_encoded_pairs_and_atlas_learns_on_it():
  from jaxemb.objectives import info_nce
  base, a, b = _tiny(0), _tiny(1), _tiny(2)
  queries, docs = ["find a", "find bb", "find ccc", "x"], ["def a", "def bb", "def ccc", "y y"]
  pairs = merge.tokenize_pairs(base, queries, docs)
  graph, params = split(base.module)
  loss_fn = merge.probe_loss(graph, [pairs, pairs], batch_size=4)
  expected, _ = info_nce(jaxemb.encode(base, queries), jaxemb.encode(base, docs), scale=20.0)
  np.testing.assert_allclose(jax.jit(loss_fn)(params, jnp.int32(0)), expected, rtol=1e-5)
  result = merge.atlas(params, [split(a.module)[1], split(b.module)[1]], loss_fn, steps=3,
                       tx=optax.adam(0.05))
  assert np.all(np.isfinite(result.losses)) and result.losses.shape == (3,)
  assert any(np.any(c != 0) for c in jax.tree.leaves(result.coefficients))
