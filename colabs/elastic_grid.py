"""The (layer, dim) grid of runs' metrics.jsonl, for colabs/elastic.ipynb.

    python colabs/elastic_grid.py default=RUN_DIR starbucks=RUN_DIR ... > colabs/elastic_grid.json

writes {"command": ..., "split", "metric", "runs": {name: {"L<layer>_d<dim>": value}}} from the
last row of each run's metrics.jsonl holding `<split>/L<layer>_d<dim>/<metric>` (the final
evaluation of the text_pairs grid evaluator).
"""

from __future__ import annotations

import json
import pathlib
import sys


def grid_from_metrics(path, split: str = "test", metric: str = "mrr@10") -> dict[tuple, float]:
  """{(layer, dim): value} from the last metrics.jsonl row holding `<split>/L*_d*/<metric>`."""
  grid = {}
  for line in pathlib.Path(path).read_text().splitlines():
    found = {}
    for key, value in json.loads(line).items():
      head, _, name = key.rpartition("/")
      prefix, _, size = head.rpartition("/")
      if prefix == split and name == metric and size.startswith("L") and "_d" in size:
        layer, dim = size[1:].split("_d")
        found[int(layer), int(dim)] = value
    grid = found or grid
  return grid


def main(argv: list[str]) -> None:
  runs = {}
  for item in argv:
    name, sep, directory = item.partition("=")
    if not sep:
      raise ValueError(f"argument {item!r}; expected NAME=RUN_DIR")
    grid = grid_from_metrics(pathlib.Path(directory) / "metrics.jsonl")
    runs[name] = {f"L{l}_d{d}": v for (l, d), v in sorted(grid.items())}
  print(json.dumps({"command": "python colabs/elastic_grid.py " + " ".join(argv),
                    "split": "test", "metric": "mrr@10", "runs": runs}, indent=1))


if __name__ == "__main__":
  main(sys.argv[1:])
