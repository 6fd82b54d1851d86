"""Surface forms, decompositions and the heuristic initialisers on hand-built toy vocabularies.

Expected decompositions are written out by hand for each spelling family (WordPiece `##`,
byte-level BPE `Ġ`, SentencePiece `▁`); expected rows are recomputed here in float64 with
independent code (loops, a bisection simplex projection, numpy's SVD).
"""

from __future__ import annotations

import numpy as np
import pytest
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers

from jaxemb.adapt import init as I
from jaxemb.adapt import surface as S

SOURCE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##world", "he",
                "##llo", "foo", "##foo", "bar", "##bar", ".", "(", ")", "_", "x", "##x", "def",
                "##de", "##f", "e", "##e", "in", "##it"]
SRC = {t: i for i, t in enumerate(SOURCE_VOCAB)}


def source_tokenizer() -> tokenizers.Tokenizer:
  """A MiniLM-like source: lowercasing, accent-stripping BERT WordPiece."""
  tok = tokenizers.Tokenizer(models.WordPiece(dict(SRC), unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.add_special_tokens(SOURCE_VOCAB[:5])
  return tok


def wordpiece_target() -> tuple[tokenizers.Tokenizer, dict[str, list[str]]]:
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "Hello", "##world", "helloworld", "##foobar",
           "foo.", "é", "##xyz", "_init"]
  tok = tokenizers.Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)},
                                              unk_token="[UNK]"))
  tok.add_special_tokens(vocab[:4])
  expected = {"Hello": ["hello"], "##world": ["##world"], "helloworld": ["hello", "##world"],
              "##foobar": ["##foo", "##bar"], "foo.": ["foo", "."], "é": ["e"],
              "##xyz": ["[UNK]"], "_init": ["_", "in", "##it"]}
  return tok, expected


def _bytes(text: str) -> str:
  table = S.bytes_to_unicode()
  return "".join(table[b] for b in text.encode("utf-8"))


def byte_level_target() -> tuple[tokenizers.Tokenizer, dict[str, list[str]]]:
  vocab = ["<pad>", "<s>", "</s>", "<unk>", _bytes(" hello"), "world", "def", _bytes(" ("),
           _bytes("\n   "), _bytes(" helloworld"), _bytes(" é"), "Ã", _bytes(" foo_x"), "Def"]
  tok = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(vocab)}, merges=[]))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens(vocab[:4])
  # "world" ties (##world vs world, one piece each) -> literal continuation; "def" is one
  # piece as a word but two as a continuation -> word; "\n   " is whitespace; "Ã" is half a
  # UTF-8 character -> nothing.
  expected = {_bytes(" hello"): ["hello"], "world": ["##world"], "def": ["def"],
              _bytes(" ("): ["("], _bytes("\n   "): [], _bytes(" helloworld"): ["hello", "##world"],
              _bytes(" é"): ["e"], "Ã": [], _bytes(" foo_x"): ["foo", "_", "x"], "Def": ["def"]}
  return tok, expected


def metaspace_target() -> tuple[tokenizers.Tokenizer, dict[str, list[str]]]:
  pieces = ["<unk>", "<pad>", "▁Hello", "▁", "world", "▁foo(", "bar", "▁xx"]
  tok = tokenizers.Tokenizer(models.Unigram([(p, -1.0) for p in pieces], unk_id=0))
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  tok.add_special_tokens(pieces[:2])
  expected = {"▁Hello": ["hello"], "▁": [], "world": ["##world"], "▁foo(": ["foo", "("],
              "bar": ["##bar"], "▁xx": ["x", "##x"]}
  return tok, expected


FAMILIES = {"wordpiece": wordpiece_target, "byte_level": byte_level_target,
            "metaspace": metaspace_target}
# Target special -> source special it must copy (by content, else by role).
SPECIAL_MAP = {"[PAD]": "[PAD]", "[UNK]": "[UNK]", "[CLS]": "[CLS]", "[SEP]": "[SEP]",
               "<pad>": "[PAD]", "<s>": "[CLS]", "</s>": "[SEP]", "<unk>": "[UNK]"}


def _source_emb(dim: int = 6, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(len(SOURCE_VOCAB), dim)).astype(np.float32)


def test_bytes_to_unicode_is_gpt2_alphabet():
  table = S.bytes_to_unicode()
  assert sorted(table) == list(range(256))
  assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
  assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"
  # The table agrees with the library's own byte-level pre-tokeniser.
  text = " héllo\n\tx"
  (spelled, _), = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                           use_regex=False).pre_tokenize_str(text)
  assert spelled == _bytes(text)
  assert S.unicode_to_bytes()["Ġ"] == 32


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_spelling_detected(family):
  tok, _ = FAMILIES[family]()
  assert S.spelling_of(tok).kind == family
  assert S.spelling_of(source_tokenizer()).kind == "wordpiece"


def test_surface_forms():
  wp, bl, ms = S.Spelling("wordpiece"), S.Spelling("byte_level"), S.Spelling("metaspace")
  assert S.surface_form("##lo", wp) == ("lo", False)
  assert S.surface_form("hello", wp) == ("hello", True)
  assert S.surface_form("##", wp) == ("##", True)
  assert S.surface_form("Ġhello", bl) == ("hello", True)
  assert S.surface_form("hello", bl) == ("hello", False)
  assert S.surface_form("ĊĠĠ", bl) == ("", True)
  assert S.surface_form(_bytes("é"), bl) == ("é", False)
  assert S.surface_form("▁hello", ms) == ("hello", True)
  assert S.surface_form("lo", ms) == ("lo", False)
  assert S.surface_form("▁", ms) == ("", True)
  with pytest.raises(ValueError, match="not one of"):
    S.Spelling("bpe")


def test_wordpiece_decomposition_matches_huggingface():
  """The own greedy WordPiece equals the library's on word starts (MiniLM's vocabulary)."""
  from jaxemb.pretrained.sentence_transformers import resolve
  src = tokenizers.Tokenizer.from_file(str(resolve("all-MiniLM-L6-v2") / "tokenizer.json"))
  d = S.Decomposer(src)
  words = ["hello", "unaffable", "tokenization", "rollover", "xyzzyq", "naïve", "x" * 101,
           "getattr", "__init__", "ü", "中文"]
  for w in words:
    for piece in src.pre_tokenizer.pre_tokenize_str(src.normalizer.normalize_str(w)):
      assert d._wordpiece(piece[0], True) == [t.id for t in src.model.tokenize(piece[0])], w
  inv = {i: t for t, i in d.vocab.items()}
  assert [inv[i] for i in d("Rollover", False)] == ["##roll", "##over"]
  assert [inv[i] for i in d("self.Foo", True)] == ["self", ".", "foo"]
  assert d("  \n", True) == []


def test_decomposer_with_byte_level_and_metaspace_sources():
  from tokenizers import trainers
  bl = tokenizers.Tokenizer(models.BPE())
  bl.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  bl.decoder = decoders.ByteLevel()
  bl.train_from_iterator([" hello world", " hello there", "helloworld", " worlds apart"] * 5,
                         trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  d = S.Decomposer(bl)
  # A surface form decomposes as the same text does inside a sentence.
  for text in (" hello world", " worlds hello", " héllo"):
    assert sum((d(w, True) for w in text.split()), []) == bl.encode(text).ids, text
  assert d("world", False) == bl.encode("xworld").ids[1:] == [bl.token_to_id("world")]
  ms, _ = metaspace_target()
  d = S.Decomposer(ms)
  vocab = ms.get_vocab()
  assert d("Hello", True) == [vocab["▁Hello"]]
  assert d("bar", False) == [vocab["bar"]]
  assert d("xx", True) == [vocab["▁xx"]]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_plan_decompositions_and_copies(family):
  target, expected = FAMILIES[family]()
  plan = I.build_plan(source_tokenizer(), target)
  vocab = target.get_vocab(with_added_tokens=True)
  assert plan.target_size == target.get_vocab_size(with_added_tokens=True)
  for tok, pieces in expected.items():
    assert plan.pieces[vocab[tok]] == [SRC[p] for p in pieces], tok
  want_copy = {vocab[t]: SRC[s] for t, s in SPECIAL_MAP.items() if t in vocab}
  want_copy.update({vocab[t]: SRC[p[0]] for t, p in expected.items()
                    if len(p) == 1 and p[0] != "[UNK]"})
  assert plan.copy == want_copy
  assert plan.special == {vocab[t] for t in SPECIAL_MAP if t in vocab}


def test_bare_token_policy():
  target, _ = byte_level_target()
  vocab = target.get_vocab()
  for bare, world, def_ in (("continuation", ["##world"], ["##de", "##f"]),
                            ("word", ["world"], ["def"])):
    plan = I.build_plan(source_tokenizer(), target, bare=bare)
    assert plan.pieces[vocab["world"]] == [SRC[p] for p in world]
    assert plan.pieces[vocab["def"]] == [SRC[p] for p in def_]
  with pytest.raises(ValueError, match="bare='maybe'"):
    I.build_plan(source_tokenizer(), target, bare="maybe")


def _expected_mean_rows(e, plan, expected_pieces, vocab):
  e = e.astype(np.float64)
  regular = [i for i in range(len(SOURCE_VOCAB)) if i >= 5]  # [PAD]..[MASK] are specials
  centroid = e[regular].mean(0)
  out = {}
  for tok, pieces in expected_pieces.items():
    out[vocab[tok]] = (np.mean([e[SRC[p]] for p in pieces], 0) if pieces else centroid)
  return out, centroid


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_mean_exact(family):
  target, expected = FAMILIES[family]()
  plan = I.build_plan(source_tokenizer(), target)
  vocab = target.get_vocab(with_added_tokens=True)
  e = _source_emb()
  got = I.initialize("mean", e, plan)
  assert got.shape == (plan.target_size, e.shape[1]) and got.dtype == np.float32
  rows, centroid = _expected_mean_rows(e, plan, expected, vocab)
  for t, row in rows.items():
    np.testing.assert_allclose(got[t], row, rtol=1e-6, atol=1e-6)
  for t, s in SPECIAL_MAP.items():
    if t in vocab:
      np.testing.assert_array_equal(got[vocab[t]], e[SRC[s]])


def _simplex_projection(z: np.ndarray) -> np.ndarray:
  """argmin_p ||p - z|| over the simplex, by bisection on the threshold (independent of sort)."""
  lo, hi = z.min() - 1, z.max()
  for _ in range(200):
    tau = (lo + hi) / 2
    if np.maximum(z - tau, 0).sum() > 1:
      lo = tau
    else:
      hi = tau
  return np.maximum(z - (lo + hi) / 2, 0)


def test_sparsemax_is_simplex_projection():
  rng = np.random.default_rng(1)
  for scale in (0.1, 1.0, 10.0):
    z = rng.normal(size=(5, 7)) * scale
    got = I.sparsemax(z)
    for row, g in zip(z, got):
      np.testing.assert_allclose(g, _simplex_projection(row), atol=1e-9)
      assert abs(g.sum() - 1) < 1e-9 and (g >= 0).all()
  np.testing.assert_allclose(I.sparsemax(np.array([3.0, 0.0, 0.0])), [[1.0, 0, 0]])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_focus_exact(family):
  target, expected = FAMILIES[family]()
  plan = I.build_plan(source_tokenizer(), target)
  vocab = target.get_vocab(with_added_tokens=True)
  e = _source_emb()
  rng = np.random.default_rng(2)
  aux = rng.normal(size=(plan.target_size, 4))
  unseen = vocab[list(expected)[-1]]  # one token without an auxiliary vector -> mean
  aux[unseen] = 0
  got = I.init_focus(e, plan, aux)
  mean_rows, _ = _expected_mean_rows(e, plan, expected, vocab)
  anchors = [vocab[t] for t, p in expected.items()
             if len(p) == 1 and p[0] != "[UNK]" and vocab[t] != unseen]
  for tok, pieces in expected.items():
    t = vocab[tok]
    if t in plan.copy:
      np.testing.assert_array_equal(got[t], e[plan.copy[t]])
    elif t == unseen:
      np.testing.assert_allclose(got[t], mean_rows[t], atol=1e-6)
    else:
      sims = np.array([aux[t] @ aux[a] / np.linalg.norm(aux[t]) / np.linalg.norm(aux[a])
                       for a in anchors])
      w = _simplex_projection(sims)
      row = sum(wi * e[plan.copy[a]].astype(np.float64) for wi, a in zip(w, anchors))
      np.testing.assert_allclose(got[t], row, atol=1e-6)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ofa_exact(family):
  target, expected = FAMILIES[family]()
  plan = I.build_plan(source_tokenizer(), target)
  vocab = target.get_vocab(with_added_tokens=True)
  e = _source_emb(dim=8)
  rank, k, temp = 3, 4, 0.5
  got = I.init_ofa(e, plan, rank=rank, top_k=k, temperature=temp)
  u, s, vt = np.linalg.svd(e.astype(np.float64), full_matrices=False)
  coords = u[:, :rank]
  low = lambda c: c @ np.diag(s[:rank]) @ vt[:rank]
  _, centroid = _expected_mean_rows(e, plan, expected, vocab)
  for tok, pieces in expected.items():
    t = vocab[tok]
    if t in plan.copy:
      np.testing.assert_array_equal(got[t], e[plan.copy[t]])
      continue
    if not pieces:
      np.testing.assert_allclose(got[t], centroid, atol=1e-6)
      continue
    q = np.mean([coords[SRC[p]] for p in pieces], 0)
    cands = range(5, len(SOURCE_VOCAB))
    sims = {c: coords[c] @ q / np.linalg.norm(coords[c]) / np.linalg.norm(q) for c in cands}
    top = sorted(cands, key=lambda c: -sims[c])[:k]
    w = np.array([np.exp(sims[c] / temp) for c in top])
    w /= w.sum()
    np.testing.assert_allclose(got[t], low(sum(wi * coords[c] for wi, c in zip(w, top))),
                               atol=1e-5)


def _big_plan(size: int, source_size: int) -> I.TokenPlan:
  """A plan with `size` fresh rows and two copies (to check the sampled moments)."""
  return I.TokenPlan(target_size=size, source_size=source_size, copy={0: 1, 1: 0},
                     special=set(), pieces=[[] for _ in range(size)], tokens=[""] * size)


def test_random_moments_and_copies():
  rng = np.random.default_rng(3)
  e = (rng.normal(size=(500, 4)) * [1, 2, 3, 0.5] + [0, 1, -1, 5]).astype(np.float32)
  plan = _big_plan(20000, 500)
  got = I.init_random(e, plan, seed=0).astype(np.float64)
  np.testing.assert_array_equal(got[0], e[1])
  np.testing.assert_array_equal(got[1], e[0])
  fresh = got[2:]
  np.testing.assert_allclose(fresh.mean(0), e.mean(0), atol=0.06)
  np.testing.assert_allclose(fresh.std(0), e.std(0), rtol=0.03)
  # Independent dimensions: no correlation introduced.
  assert abs(np.corrcoef(fresh.T)[0, 1]) < 0.03
  np.testing.assert_array_equal(I.init_random(e, plan, seed=0), I.init_random(e, plan, seed=0))


def test_multivariate_moments_and_copies():
  rng = np.random.default_rng(4)
  mix = np.array([[1.0, 0.8, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 2.0]])
  e = (rng.normal(size=(800, 3)) @ mix + [1.0, -2.0, 0.5]).astype(np.float32)
  plan = _big_plan(30000, 800)
  for scale in (1.0, 1e-2):
    got = I.init_multivariate(e, plan, seed=1, scale=scale).astype(np.float64)
    np.testing.assert_array_equal(got[0], e[1])
    fresh = got[2:]
    want_cov = np.cov(e.astype(np.float64), rowvar=False) * scale
    np.testing.assert_allclose(fresh.mean(0), e.mean(0), atol=0.05 * np.sqrt(scale) + 1e-6)
    np.testing.assert_allclose(np.cov(fresh, rowvar=False), want_cov,
                               atol=0.03 * np.abs(want_cov).max())
  with pytest.raises(ValueError, match="scale must be >= 0"):
    I.init_multivariate(e, plan, scale=-1)


def _dense_ppmi(sequences, vocab_size, window, smoothing):
  n = np.zeros((vocab_size, vocab_size))
  for seq in sequences:
    for i, a in enumerate(seq):
      for j, b in enumerate(seq):
        if i != j and abs(i - j) <= window:
          n[a, b] += 1
  total = n.sum()
  pa = n.sum(1) / total
  ctx = n.sum(0) ** smoothing
  pc = ctx / ctx.sum()
  out = np.zeros_like(n)
  for a in range(vocab_size):
    for b in range(vocab_size):
      if n[a, b] > 0:
        out[a, b] = max(0.0, np.log(n[a, b] / total / (pa[a] * pc[b])))
  return out


def test_ppmi_and_static_vectors():
  rng = np.random.default_rng(5)
  seqs = [list(rng.integers(0, 9, size=rng.integers(1, 12))) for _ in range(30)]
  want = _dense_ppmi(seqs, 10, 3, 0.75)  # id 9 never occurs
  got = I.ppmi_matrix(seqs, 10, window=3).toarray()
  np.testing.assert_allclose(got, want, atol=1e-10)
  vecs = I.static_vectors(seqs, 10, dim=3, window=3)
  assert vecs.shape == (10, 3) and not vecs[9].any()
  u, s, _ = np.linalg.svd(want)
  # U_k S_k U_kᵀ is invariant to the signs SVD picks.
  np.testing.assert_allclose(vecs @ vecs.T, (u[:, :3] * s[:3]) @ u[:, :3].T, atol=1e-4)
  with pytest.raises(ValueError, match=r"token ids must be in \[0, 5\)"):
    I.ppmi_matrix([[0, 7]], 5)


def test_focus_trains_its_own_space_from_texts():
  target, _ = byte_level_target()
  plan = I.build_plan(source_tokenizer(), target)
  texts = [" hello world def", " helloworld ( foo_x", "def world hello"] * 3
  got = I.initialize("focus", _source_emb(), plan, target=target, texts=texts)
  assert got.shape == (plan.target_size, 6) and np.isfinite(got).all()
  with pytest.raises(ValueError, match="needs aux vectors"):
    I.initialize("focus", _source_emb(), plan)


def test_bad_inputs():
  target, _ = wordpiece_target()
  plan = I.build_plan(source_tokenizer(), target)
  with pytest.raises(ValueError, match="unknown initialisation method 'nope'"):
    I.initialize("nope", _source_emb(), plan)
  with pytest.raises(ValueError, match="source embeddings have shape"):
    I.initialize("mean", np.zeros((3, 4)), plan)
  with pytest.raises(ValueError, match="aux vectors have shape"):
    I.init_focus(_source_emb(), plan, np.zeros((2, 2)))
  with pytest.raises(ValueError, match="rank must be in"):
    I.init_ofa(_source_emb(), plan, rank=0)
