"""Surface forms of tokens, and their decomposition into a source tokenizer's pieces.

Tokenizer families spell the same string differently:
  WordPiece          "hello", "##lo"       (continuation marked by a prefix)
  byte-level BPE     "Ġhello", "lo"        (GPT-2 byte-to-unicode map; "Ġ" = a preceding space)
  SentencePiece      "▁hello", "lo"        (Metaspace: "▁" = a preceding space)
A token's *surface form* is the pair (text, starts_word): the text it stands for, without the
space marker, and whether a word boundary precedes it. Whitespace-only tokens (byte-level "Ċ",
"ĠĠĠ", Metaspace "▁") have empty text: a BERT-style source drops whitespace, so they have no
source counterpart.

`Decomposer(source)` turns a surface form into source token ids the way the source tokenizer
would have split that text in context: the text is normalised with the *source* normaliser
(all-MiniLM-L6-v2 lowercases and strips accents), pre-tokenised with the source pre-tokeniser,
and each piece run through the source model (a continuation piece gets the source's own
continuation spelling, e.g. "##lo").
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import tokenizers

KINDS = ("wordpiece", "byte_level", "metaspace", "plain")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible byte -> printable character map used by byte-level BPE.

  Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, ...) map to
  the characters from U+0100 on, in byte order (so space, 0x20, is "Ġ" = U+0120).
  """
  keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in keep:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
  """Inverse of `bytes_to_unicode`."""
  return {c: b for b, c in bytes_to_unicode().items()}


@dataclasses.dataclass(frozen=True)
class Spelling:
  """How a tokenizer spells its tokens.

  kind: one of KINDS.
  prefix: WordPiece continuation prefix ("##").
  replacement: Metaspace word-boundary character ("▁").
  """

  kind: str
  prefix: str = "##"
  replacement: str = "\u2581"

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"spelling kind {self.kind!r} is not one of {KINDS}")


def _walk(node: Any):
  """Every dict in a tokenizer.json component (Sequence components nest their parts)."""
  if isinstance(node, dict):
    yield node
    for v in node.values():
      yield from _walk(v)
  elif isinstance(node, list):
    for v in node:
      yield from _walk(v)


def tokenizer_json(tokenizer: tokenizers.Tokenizer) -> dict:
  """The tokenizer's serialised form (tokenizer.json) as a dict."""
  return json.loads(tokenizer.to_str())


def spelling_of(tokenizer: tokenizers.Tokenizer) -> Spelling:
  """Detects the spelling family from the model, pre-tokeniser and decoder."""
  spec = tokenizer_json(tokenizer)
  model = spec.get("model") or {}
  if model.get("type") == "WordPiece":
    return Spelling("wordpiece", prefix=model.get("continuing_subword_prefix") or "##")
  types = {}
  for part in ("pre_tokenizer", "decoder", "normalizer"):
    for node in _walk(spec.get(part)):
      if "type" in node:
        types.setdefault(node["type"], node)
  if "ByteLevel" in types:
    return Spelling("byte_level")
  if "Metaspace" in types:
    return Spelling("metaspace", replacement=types["Metaspace"].get("replacement", "\u2581"))
  if "Replace" in types and types["Replace"].get("content") == "\u2581":
    return Spelling("metaspace")  # older SentencePiece conversions: Replace(" ", "▁")
  return Spelling("plain")


def surface_form(token: str, spelling: Spelling) -> tuple[str, bool]:
  """(text, starts_word) of a (non-special) token string.

  Byte-level tokens whose bytes are not valid UTF-8 on their own (part of a multi-byte
  character) keep only their decodable characters.
  """
  if spelling.kind == "wordpiece":
    if spelling.prefix and token.startswith(spelling.prefix) and token != spelling.prefix:
      return token[len(spelling.prefix):], False
    return token, True
  if spelling.kind == "byte_level":
    inverse = unicode_to_bytes()
    if all(c in inverse for c in token):
      text = bytes(inverse[c] for c in token).decode("utf-8", errors="ignore")
    else:  # an added token spelled in plain text
      text = token
    stripped = text.lstrip()
    return stripped, stripped != text
  if spelling.kind == "metaspace":
    text = token.replace(spelling.replacement, " ")
    stripped = text.lstrip()
    return stripped, stripped != text
  return token, True


class Decomposer:
  """Source token ids of a surface form, as the source tokenizer would split that text.

  Works for WordPiece, byte-level BPE, Metaspace and plain sources. Returns [] for text that
  the source drops entirely (whitespace); pieces the source cannot spell come back as its
  unknown token (see `unk_id`).
  """

  def __init__(self, source: tokenizers.Tokenizer):
    self.tokenizer = source
    self.spelling = spelling_of(source)
    spec = tokenizer_json(source)
    model = spec.get("model") or {}
    self.vocab = source.get_vocab(with_added_tokens=True)
    unk = model.get("unk_token")
    if isinstance(unk, int):  # Unigram stores unk_id
      self.unk_id = unk
    else:
      self.unk_id = self.vocab.get(unk) if unk is not None else None
    self.max_chars = model.get("max_input_chars_per_word", 100)
    self._model = source.model

  def normalize(self, text: str) -> str:
    """The source normaliser applied to `text` (identity when it has none)."""
    norm = self.tokenizer.normalizer
    return norm.normalize_str(text) if norm is not None else text

  def _pretokenize(self, text: str) -> list[str]:
    pre = self.tokenizer.pre_tokenizer
    if pre is None or self.spelling.kind == "metaspace":
      # Metaspace pre-tokenisers re-add the marker themselves; split on spaces here instead.
      return text.split() if self.spelling.kind == "metaspace" else [text]
    pieces = [p for p, _ in pre.pre_tokenize_str(text)]
    if self.spelling.kind == "byte_level":
      inverse = unicode_to_bytes()
      pieces = [bytes(inverse[c] for c in p).decode("utf-8", errors="ignore") for p in pieces]
      pieces = [p.strip() for p in pieces]
    return [p for p in pieces if p]

  def _continues(self, text: str) -> bool:
    """Whether the source would keep `text` glued to a preceding letter (same word)."""
    probe = self._pretokenize("x" + text)
    return bool(probe) and probe[0] != "x" and probe[0].startswith("x")

  def _wordpiece(self, word: str, starts_word: bool) -> list[int]:
    """Greedy longest-match WordPiece, as Hugging Face's, starting mid-word if asked."""
    if len(word) > self.max_chars:
      return [self.unk_id]
    prefix = self.spelling.prefix
    ids, start = [], 0
    while start < len(word):
      end, found = len(word), None
      while end > start:
        piece = word[start:end]
        if start > 0 or not starts_word:
          piece = prefix + piece
        if piece in self.vocab:
          found = self.vocab[piece]
          break
        end -= 1
      if found is None:
        return [self.unk_id]  # as HF: one unknown character makes the whole word unknown
      ids.append(found)
      start = end
    return ids

  def _model_pieces(self, word: str, starts_word: bool) -> list[int]:
    kind = self.spelling.kind
    if kind == "wordpiece":
      return self._wordpiece(word, starts_word)
    if kind == "byte_level":
      table = bytes_to_unicode()
      spelled = "".join(table[b] for b in ((" " if starts_word else "") + word).encode("utf-8"))
    elif kind == "metaspace":
      spelled = (self.spelling.replacement if starts_word else "") + word
    else:
      spelled = word
    return [t.id for t in self._model.tokenize(spelled)]

  def __call__(self, text: str, starts_word: bool = True) -> list[int]:
    """Source ids for the surface form (text, starts_word)."""
    text = self.normalize(text)
    if not text.strip():
      return []
    # A continuation that the source would split off anyway (punctuation) starts a word.
    if not starts_word and (text[0].isspace() or not self._continues(text)):
      starts_word = True
    if not starts_word:
      first = self._pretokenize("x" + text)[0][1:]
      rest = self._pretokenize(text[len(first):])
      words = [(first, False)] + [(w, True) for w in rest]
    else:
      words = [(w, True) for w in self._pretokenize(text)]
    ids = []
    for word, begins in words:
      ids.extend(self._model_pieces(word, begins))
    return ids
