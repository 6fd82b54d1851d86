"""Pure extraction of (docstring, code) pairs from a Python standard-library tree.

No TFDS, no I/O beyond reading `.py` files: everything here is testable on a small
synthetic directory. The TFDS builder in `stdlib_code_search_dataset_builder.py` only
wraps `extract()` and `split_of()`.

Decisions (the dataset card repeats them):
- One example per function or method with a docstring, including `async def`, methods
  of classes nested in classes (`Outer.Inner.meth`) and functions defined under
  module/class-level `if`/`try`/`with` blocks (the stdlib defines many per platform).
  Functions nested inside *functions* are skipped: they are private helpers whose
  source depends on the enclosing scope and they have no stable public qualname.
- `code` keeps decorators (`@property`, `@classmethod`, ... carry meaning), the
  signature and the body; the docstring statement is removed (whole lines when it sits
  on its own lines, which is the normal case). The code is dedented to column 0.
- `query` is the first paragraph of `inspect.cleandoc(docstring)` with whitespace
  collapsed to single spaces.
- Junk: queries under `MIN_QUERY_WORDS` words or starting with a placeholder word
  (TODO, XXX, FIXME, Docstring) are dropped, as are bodies that are empty once the
  docstring is gone (`pass`, `...`, `raise NotImplementedError`: abstract stubs whose
  code says nothing about the query).
- Dedup: modules are visited in sorted dotted-name order and functions in source order;
  the first occurrence wins. Exact (query, code) duplicates are dropped, then any exact
  duplicate `code` (e.g. the same helper copied into two modules with different
  docstrings), so no code snippet can be both a positive and a distractor.
- `id` is f"{module}:{qualname}"; a qualname defined twice in one module (per-platform
  definitions) gets a "#2", "#3", ... suffix in source order.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import io
import os
import tokenize
import warnings
from collections.abc import Iterator, Sequence

SPLITS = ("train", "validation", "test")
MIN_QUERY_WORDS = 3

# Directory names pruned anywhere below the stdlib root: third-party code, test
# suites (`test`, `*/tests`, `idlelib/idle_test`, `lib2to3/tests`) and bytecode caches.
SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})

_PLACEHOLDER_PREFIXES = ("todo", "xxx", "fixme", "docstring")

# Split rule: sha256 of salt + top-level package name -> bucket in [0, 100).
# A few big packages (tkinter, idlelib, email, ...) dominate the counts, so a pure hash
# is lumpy; the salt was chosen once as the first of ".../v0", ".../v1", ... whose
# CPython 3.11.7 example counts land within 1 point of 80/10/10 (v33: 80.2/9.8/10.0)
# and is frozen together with TEST_PACKAGES.
SPLIT_SALT = "jaxemb/stdlib_code_search/v33"
SPLIT_PERCENT = (("train", 80), ("validation", 90), ("test", 100))

# Top-level packages of the test split, produced by `hash_split()` on the CPython
# 3.11.7 stdlib and frozen so the test set never moves when the stdlib gains or loses
# modules. New packages that hash into the test bucket go to train (see `split_of`).
TEST_PACKAGES: tuple[str, ...] = (
    "__hello__", "_aix_support", "_bootsubprocess", "_pydecimal", "cgi",
    "configparser", "difflib", "getpass", "imghdr", "json", "logging",
    "modulefinder", "operator", "pkgutil", "poplib", "queue", "rlcompleter",
    "sre_compile", "zipapp",
)


@dataclasses.dataclass
class Stats:
  """Counters of one extraction run (all integers)."""
  files: int = 0  # .py files considered (after directory pruning)
  files_skipped: int = 0  # failed to decode or parse
  files_not_modules: int = 0  # file name is not an importable dotted name
  functions: int = 0  # functions/methods visited
  no_docstring: int = 0
  junk_query: int = 0
  empty_body: int = 0
  duplicate_pair: int = 0  # exact (query, code) duplicates dropped
  duplicate_code: int = 0  # exact code duplicates (different query) dropped
  examples: int = 0


@dataclasses.dataclass
class Extraction:
  """Result of `extract`: examples in deterministic order plus counters."""
  examples: list[dict[str, str]]
  stats: Stats
  skipped_files: list[str]  # paths relative to the stdlib root


def top_level_package(module: str) -> str:
  """`email.mime.text` -> `email`."""
  if not module:
    raise ValueError(f"module must be a non-empty dotted name, got {module!r}")
  return module.split(".", 1)[0]


def hash_bucket(package: str, salt: str = SPLIT_SALT) -> int:
  """Stable bucket in [0, 100) of a top-level package (sha256, not `hash()`)."""
  digest = hashlib.sha256(f"{salt}:{package}".encode()).digest()
  return int.from_bytes(digest[:8], "big") % 100


def hash_split(package: str, salt: str = SPLIT_SALT) -> str:
  """The raw hash rule: 80/10/10 buckets of the top-level package name."""
  bucket = hash_bucket(package, salt)
  for split, upper in SPLIT_PERCENT:
    if bucket < upper:
      return split
  raise AssertionError(bucket)  # unreachable: buckets are < 100


def split_of(module: str) -> str:
  """Split ("train", "validation" or "test") of a dotted module name.

  Test membership comes from the frozen `TEST_PACKAGES`; everything else uses the
  hash rule, except that a package absent from the frozen list but hashing into the
  test bucket (new in a later Python) goes to train, so the test set stays fixed.
  Whole top-level packages always share one split.
  """
  package = top_level_package(module)
  if package in TEST_PACKAGES:
    return "test"
  split = hash_split(package)
  return "train" if split == "test" else split


def module_name(relpath: str) -> str | None:
  """`email/mime/text.py` -> `email.mime.text`; `pkg/__init__.py` -> `pkg`.

  Returns None when the path is not an importable dotted name (e.g.
  `_sysconfigdata__linux_x86_64-linux-gnu.py`, `config-3.11-.../python-config.py`).
  """
  parts = relpath.replace(os.sep, "/").split("/")
  if not parts[-1].endswith(".py"):
    raise ValueError(f"expected a path ending in .py, got {relpath!r}")
  parts[-1] = parts[-1][:-3]
  if parts[-1] == "__init__":
    parts.pop()
  if not parts or not all(p.isidentifier() for p in parts):
    return None
  return ".".join(parts)


def iter_module_files(stdlib_dir: str) -> Iterator[tuple[str, str]]:
  """Yields (relative path, module name or None) for every .py file, pruned."""
  for root, dirs, files in os.walk(stdlib_dir):
    dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
    for name in sorted(files):
      if name.endswith(".py"):
        rel = os.path.relpath(os.path.join(root, name), stdlib_dir)
        yield rel, module_name(rel)


def read_source(path: str) -> str:
  """Decodes a file honouring its PEP 263 coding cookie; newlines become "\\n"."""
  with open(path, "rb") as f:
    raw = f.read()
  encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
  text = raw.decode(encoding)
  # ast offsets count "\n"-terminated lines; normalising keeps our byte maths simple.
  return text.replace("\r\n", "\n").replace("\r", "\n")


def first_paragraph(docstring: str) -> str:
  """First paragraph of a cleaned docstring with whitespace collapsed."""
  lines = []
  for line in inspect.cleandoc(docstring).split("\n"):
    if not line.strip():
      if lines:
        break
      continue
    lines.append(line)
  return " ".join(" ".join(lines).split())


def is_junk_query(query: str) -> bool:
  """Too short to be a query, or a placeholder such as "TODO" / "Docstring"."""
  if len(query.split()) < MIN_QUERY_WORDS:
    return True
  return query.lower().lstrip("#:- ").startswith(_PLACEHOLDER_PREFIXES)


def _is_stub_statement(stmt: ast.stmt) -> bool:
  if isinstance(stmt, ast.Pass):
    return True
  if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
    return stmt.value.value is Ellipsis
  if isinstance(stmt, ast.Raise) and stmt.exc is not None:
    exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
  return False


def has_empty_body(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
  """True when the body, docstring aside, is only `pass`/`...`/`raise NotImpl...`."""
  return all(_is_stub_statement(s) for s in node.body[1:])


def _child_bodies(node: ast.stmt) -> Iterator[list[ast.stmt]]:
  """Statement lists inside a compound statement (if/try/with/for/while/match)."""
  for _, value in ast.iter_fields(node):
    if not isinstance(value, list) or not value:
      continue
    if isinstance(value[0], ast.stmt):
      yield value
    elif isinstance(value[0], (ast.ExceptHandler, ast.match_case)):
      for handler in value:
        yield handler.body


def iter_functions(
    body: Sequence[ast.stmt], prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
  """(qualname, node) of functions and methods, not descending into functions."""
  for node in body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield prefix + node.name, node
    elif isinstance(node, ast.ClassDef):
      yield from iter_functions(node.body, f"{prefix}{node.name}.")
    else:
      for child in _child_bodies(node):
        yield from iter_functions(child, prefix)


class ByteSource:
  """A source string addressable by ast's (lineno, UTF-8 byte col_offset)."""

  def __init__(self, source: str):
    self.data = source.encode("utf-8")
    self.line_starts = [0]
    for line in self.data.split(b"\n"):
      self.line_starts.append(self.line_starts[-1] + len(line) + 1)

  def offset(self, lineno: int, col: int) -> int:
    return self.line_starts[lineno - 1] + col


def function_code(
    src: ByteSource, node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
  """Decorators + signature + body of `node`, docstring removed, dedented."""
  first = node.decorator_list[0] if node.decorator_list else node
  start = src.offset(first.lineno, 0)
  end = src.offset(node.end_lineno, node.end_col_offset)
  doc = node.body[0]
  doc_start = src.offset(doc.lineno, doc.col_offset)
  doc_end = src.offset(doc.end_lineno, doc.end_col_offset)
  line_start = src.offset(doc.lineno, 0)
  next_line = src.line_starts[doc.end_lineno]  # start of the line after the docstring
  before = src.data[line_start:doc_start]
  after = src.data[doc_end:next_line].strip()
  if not before.strip() and (not after or after.startswith(b"#")):
    # The usual layout: the docstring owns its lines; drop them whole.
    doc_start, doc_end = line_start, min(next_line, end)
  else:
    # `def f(): "doc"; return x` -- cut the literal and the `;` that follows it.
    rest = src.data[doc_end:end]
    stripped = rest.lstrip(b" \t")
    if stripped.startswith(b";"):
      stripped = stripped[1:].lstrip(b" \t")
    doc_end = end - len(stripped)
  code = (src.data[start:doc_start] + src.data[doc_end:end]).decode("utf-8")
  return dedent(code, node.col_offset)


def dedent(code: str, indent: int) -> str:
  """Removes the def line's indentation from every line that has it.

  Lines without it (continuation lines of a string literal) are left alone rather
  than altering string contents, which `textwrap.dedent` would refuse to dedent at all.
  """
  lines = code.split("\n")
  prefix = lines[0][:indent]
  out = []
  for line in lines:
    if line.startswith(prefix):
      out.append(line[indent:])
    elif not line.strip():
      out.append("")
    else:
      out.append(line)
  return "\n".join(out).rstrip()


def module_examples(
    source: str, module: str, stats: Stats) -> Iterator[dict[str, str]]:
  """Candidate examples of one module (before cross-module dedup), source order."""
  tree = ast.parse(source)
  src = ByteSource(source)
  for qualname, node in iter_functions(tree.body):
    stats.functions += 1
    docstring = ast.get_docstring(node, clean=False)
    if docstring is None:
      stats.no_docstring += 1
      continue
    query = first_paragraph(docstring)
    if is_junk_query(query):
      stats.junk_query += 1
      continue
    if has_empty_body(node):
      stats.empty_body += 1
      continue
    yield {
        "query": query,
        "code": function_code(src, node),
        "module": module,
        "qualname": qualname,
    }


def extract(stdlib_dir: str) -> Extraction:
  """Walks `stdlib_dir` and returns deduplicated examples with stable unique ids.

  Examples are ordered by module name then source position; each dict has keys
  query, code, module, qualname, id. Files that fail to decode or parse are counted
  in `stats.files_skipped` and listed in `skipped_files`.
  """
  if not os.path.isdir(stdlib_dir):
    raise ValueError(f"stdlib_dir must be an existing directory, got {stdlib_dir!r}")
  stats = Stats()
  skipped: list[str] = []
  modules: list[tuple[str, str]] = []
  for rel, module in iter_module_files(stdlib_dir):
    stats.files += 1
    if module is None:
      stats.files_not_modules += 1
    else:
      modules.append((module, rel))
  modules.sort()

  examples: list[dict[str, str]] = []
  seen_pairs: set[tuple[str, str]] = set()
  seen_code: set[str] = set()
  id_counts: dict[str, int] = {}
  for module, rel in modules:
    try:
      source = read_source(os.path.join(stdlib_dir, rel))
      with warnings.catch_warnings():
        # Old modules trigger SyntaxWarning/DeprecationWarning (invalid escapes).
        warnings.simplefilter("ignore")
        candidates = list(module_examples(source, module, stats))
    except (SyntaxError, UnicodeDecodeError, ValueError):
      # ValueError: null bytes / bad cookies; all are "cannot be read as Python".
      stats.files_skipped += 1
      skipped.append(rel)
      continue
    for ex in candidates:
      if (ex["query"], ex["code"]) in seen_pairs:
        stats.duplicate_pair += 1
        continue
      if ex["code"] in seen_code:
        stats.duplicate_code += 1
        continue
      seen_pairs.add((ex["query"], ex["code"]))
      seen_code.add(ex["code"])
      base = f"{module}:{ex['qualname']}"
      id_counts[base] = id_counts.get(base, 0) + 1
      ex["id"] = base if id_counts[base] == 1 else f"{base}#{id_counts[base]}"
      examples.append(ex)
  stats.examples = len(examples)
  return Extraction(examples=examples, stats=stats, skipped_files=skipped)


def extract_examples(stdlib_dir: str) -> list[dict[str, str]]:
  """Convenience: `extract(stdlib_dir).examples`."""
  return extract(stdlib_dir).examples


def split_counts(examples: Sequence[dict[str, str]]) -> dict[str, int]:
  """Number of examples per split under `split_of`."""
  counts = dict.fromkeys(SPLITS, 0)
  for ex in examples:
    counts[split_of(ex["module"])] += 1
  return counts
