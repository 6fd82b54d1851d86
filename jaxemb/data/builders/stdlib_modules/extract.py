"""Pure extraction of (module docstring, module source) pairs from a Python stdlib tree.

Reuses the file walk, decoding and package split of `stdlib_code_search.extract` (the same
frozen test packages, so the two corpora split alike). Decisions:
- one example per importable module with a module docstring of at least
  `code_search.MIN_QUERY_WORDS` words (placeholders dropped the same way);
- `query` is the whole cleaned docstring, whitespace collapsed;
- `code` is the module source with the docstring statement's lines removed, cut at
  `MAX_CODE_CHARS` characters (about 4k BERT tokens of Python), at a line end;
- modules whose remaining source is empty or an exact duplicate of an earlier module's are
  dropped; modules are visited in sorted dotted-name order.
"""

from __future__ import annotations

import ast
import inspect
import os
import warnings

from jaxemb.data.builders.stdlib_code_search.extract import (
    SPLITS, is_junk_query, iter_module_files, read_source, split_of)

__all__ = ["SPLITS", "MAX_CODE_CHARS", "extract", "module_example", "split_of"]

# ~3.5 characters per all-MiniLM-L6-v2 token on stdlib source (measured on the test split:
# the cut sources have a median of a few thousand tokens): 14,000 characters ~ 4k tokens.
MAX_CODE_CHARS = 14000


def cut(text: str, limit: int = MAX_CODE_CHARS) -> str:
  """`text` cut to at most `limit` characters at the last line end before the limit."""
  if len(text) <= limit:
    return text
  end = text.rfind("\n", 0, limit)
  return text[:end if end > 0 else limit]


def module_example(source: str, module: str) -> dict[str, str] | None:
  """{query, code, module, id} of one module's source, or None when it has no usable
  docstring or nothing is left without it."""
  tree = ast.parse(source)
  if not tree.body or not isinstance(tree.body[0], ast.Expr) or not isinstance(
      tree.body[0].value, ast.Constant) or not isinstance(tree.body[0].value.value, str):
    return None
  query = " ".join(inspect.cleandoc(tree.body[0].value.value).split())
  if is_junk_query(query):
    return None
  lines = source.split("\n")
  node = tree.body[0]
  code = "\n".join(lines[:node.lineno - 1] + lines[node.end_lineno:]).strip("\n")
  if not code.strip():
    return None
  return {"query": query, "code": cut(code), "module": module, "id": module}


def extract(stdlib_dir: str) -> list[dict[str, str]]:
  """Examples of every module under `stdlib_dir`, in sorted module order, deduplicated."""
  if not os.path.isdir(stdlib_dir):
    raise ValueError(f"stdlib_dir must be an existing directory, got {stdlib_dir!r}")
  modules = sorted((m, rel) for rel, m in iter_module_files(stdlib_dir) if m is not None)
  examples, seen = [], set()
  for module, rel in modules:
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes in old modules
        ex = module_example(read_source(os.path.join(stdlib_dir, rel)), module)
    except (SyntaxError, UnicodeDecodeError, ValueError):
      continue  # cannot be read as Python
    if ex is None or ex["code"] in seen:
      continue
    seen.add(ex["code"])
    examples.append(ex)
  return examples
