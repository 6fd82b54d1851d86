"""Pure extraction of code -> code continuation pairs from the stdlib's own test suite.

The second task of the model-merging experiment (issue 15): a function's first half is the
query, its second half the one relevant document, on a package set disjoint from the
code-search corpus (which prunes every test directory). Decisions:
- functions and methods (not nested in functions, as `stdlib_code_search.extract`) of the
  `test` package under the stdlib root, files in sorted path order, functions in source order;
- the function's source (decorators, signature, body), docstring removed when it has one, blank
  lines dropped, dedented; kept when it has `MIN_LINES` to `MAX_LINES` lines;
- `query` is its first floor(n / 2) lines, `code` the rest;
- exact duplicates of an earlier function's `code` half are dropped (test suites repeat
  helpers), so no document is both a positive and a distractor;
- the split is by test module (`test.test_json.test_decode` -> `test_json`), a salted sha256
  bucket, about 80/10/10 by example count, so one module's functions share a split.
"""

from __future__ import annotations

import ast
import os
import warnings

from jaxemb.data.builders.stdlib_code_search.extract import (
    SPLITS, ByteSource, dedent, function_code, hash_split, iter_functions, module_name,
    read_source)

__all__ = ["SPLITS", "MIN_LINES", "MAX_LINES", "extract", "function_lines", "split_of"]

MIN_LINES, MAX_LINES = 6, 60
# Salt: of ".../v0" ... ".../v39", the one whose CPython 3.11.7 example counts land closest to
# 80/10/10 (v14: 80.3/10.4/9.3), frozen.
SPLIT_SALT = "jaxemb/stdlib_test_continuation/v14"
PACKAGE = "test"


def split_of(module: str) -> str:
  """Split of a dotted module of the test package: the hash bucket of its second component."""
  parts = module.split(".")
  if len(parts) < 2 or parts[0] != PACKAGE:
    raise ValueError(f"expected a module of the {PACKAGE!r} package, got {module!r}")
  return hash_split(parts[1], SPLIT_SALT)


def function_lines(src: ByteSource, node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
  """Non-blank lines of a function's source, dedented, without its docstring."""
  if ast.get_docstring(node, clean=False) is not None:
    code = function_code(src, node)
  else:
    first = node.decorator_list[0] if node.decorator_list else node
    raw = src.data[src.offset(first.lineno, 0):src.offset(node.end_lineno, node.end_col_offset)]
    code = dedent(raw.decode("utf-8"), node.col_offset)
  return [line.rstrip() for line in code.split("\n") if line.strip()]


def extract(stdlib_dir: str) -> list[dict[str, str]]:
  """{query, code, module, qualname, id} of every kept function under `stdlib_dir`/test."""
  root = os.path.join(stdlib_dir, PACKAGE)
  if not os.path.isdir(root):
    raise ValueError(f"no test package at {root!r}: this Python was installed without its "
                     f"test suite (e.g. Debian's libpython3-testsuite)")
  files = []
  for directory, dirs, names in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    files += [os.path.join(directory, n) for n in sorted(names) if n.endswith(".py")]
  examples, seen, ids = [], set(), {}
  for path in sorted(files):
    module = module_name(os.path.relpath(path, stdlib_dir))
    if module is None or module == PACKAGE:
      continue
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes, deprecated syntax in old tests
        source = read_source(path)
        tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError, ValueError):
      continue  # test files that are deliberately not valid Python
    src = ByteSource(source)
    for qualname, node in iter_functions(tree.body):
      lines = function_lines(src, node)
      if not MIN_LINES <= len(lines) <= MAX_LINES:
        continue
      half = len(lines) // 2
      code = "\n".join(lines[half:])
      if code in seen:
        continue
      seen.add(code)
      base = f"{module}:{qualname}"
      ids[base] = ids.get(base, 0) + 1
      examples.append({"query": "\n".join(lines[:half]), "code": code, "module": module,
                       "qualname": qualname,
                       "id": base if ids[base] == 1 else f"{base}#{ids[base]}"})
  return examples
