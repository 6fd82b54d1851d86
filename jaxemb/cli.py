"""Command line: `jaxemb encode|demo|train|eval ...` (also `python -m jaxemb.cli`)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

DEMO_SENTENCES = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
)


def _encode(args) -> None:
  import jaxemb
  if args.input == "-":
    lines = sys.stdin.read().splitlines()
  else:
    with open(args.input, encoding="utf-8") as f:
      lines = f.read().splitlines()
  model = jaxemb.load_pretrained(args.model)
  emb = jaxemb.encode(model, lines, batch_size=args.batch_size, normalize=not args.no_normalize,
                      show_progress=None if not args.quiet else False)
  np.save(args.output, emb)
  print(f"wrote {emb.shape[0]} embeddings of dimension {emb.shape[1]} to {args.output}")


def similarity_table(texts, emb: np.ndarray) -> str:
  """A text table of cosine similarities (rows and columns numbered as `texts`)."""
  sims = emb @ emb.T
  width = max(len(t) for t in texts)
  lines = [" " * (width + 6) + " ".join(f"{j:>5d}" for j in range(len(texts)))]
  for i, text in enumerate(texts):
    lines.append(f"{i:>3d}  {text:<{width}} " + " ".join(f"{s:5.2f}" for s in sims[i]))
  return "\n".join(lines)


def _demo(args) -> None:
  import jaxemb
  model = jaxemb.load_pretrained(args.model)
  emb = jaxemb.encode(model, list(DEMO_SENTENCES))
  print(f"{model.name}: cosine similarity of {len(DEMO_SENTENCES)} sentences")
  print(similarity_table(DEMO_SENTENCES, emb))


def _train(args, overrides: list[str]) -> None:
  import logging

  from jaxemb.train.config import apply_overrides, load_config
  from jaxemb.train.loop import run
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  config = load_config(args.config)
  apply_overrides(config, overrides)
  summary = run(config, args.workdir)
  final = {k: v for k, v in summary["metrics"].items() if k in ("loss", "accuracy", "lr")}
  print(f"step {summary['step']}: {final}" + (" (preempted)" if summary["preempted"] else ""))


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxemb", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True)

  enc = sub.add_parser("encode", help="embed one text per line of a file into a .npy array")
  enc.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or directory")
  enc.add_argument("--input", required=True, help="UTF-8 text file, one text per line ('-': stdin)")
  enc.add_argument("--output", required=True, help="where to write the float32 [N, D] .npy")
  enc.add_argument("--batch-size", type=int, default=64)
  enc.add_argument("--no-normalize", action="store_true", help="skip L2 normalisation")
  enc.add_argument("--quiet", action="store_true", help="no progress bar")
  enc.set_defaults(func=_encode)

  demo = sub.add_parser("demo", help="encode a few built-in sentences, print similarities")
  demo.add_argument("--model", default="all-MiniLM-L6-v2")
  demo.set_defaults(func=_demo)

  train = sub.add_parser("train", help="train per a config file; extra --config.key=value "
                                        "arguments override config entries")
  train.add_argument("--config", required=True, help="configs/<name>.py[:arg]")
  train.add_argument("--workdir", required=True, help="run directory (resumed if it exists)")
  train.set_defaults(func=_train, takes_overrides=True)
  return parser


def main(argv: list[str] | None = None) -> None:
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  if getattr(args, "takes_overrides", False):
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
      parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.func(args, extra)
  elif extra:
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  else:
    args.func(args)


if __name__ == "__main__":
  main()
