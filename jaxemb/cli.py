"""Command line: `jaxemb encode|demo|eval|compare|train|mine|merge|transfer ...`
(also `python -m jaxemb.cli`)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
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


class UserError(Exception):
  """A mistake in what the user asked for: reported as one line, exit code 2."""


def read_lines(path: str) -> list[str]:
  """The UTF-8 lines of `path` ('-': stdin); undecodable bytes name their line and offset."""
  if path == "-":
    stdin = sys.stdin
    data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode("utf-8")
  else:
    if not os.path.isfile(path):
      raise UserError(f"input file {path!r} does not exist")
    with open(path, "rb") as f:
      data = f.read()
  try:
    return data.decode("utf-8").splitlines()
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    column = e.start - (data.rfind(b"\n", 0, e.start) + 1)
    raise UserError(f"{'stdin' if path == '-' else path}: not UTF-8 at line {line}, byte "
                    f"offset {e.start} (byte {column} of the line): "
                    f"{data[e.start:e.start + 1]!r} ({e.reason})") from None


def _encode(args) -> None:
  import jaxemb
  lines = read_lines(args.input)
  model = jaxemb.load_pretrained(args.model)
  emb = jaxemb.encode(model, lines, batch_size=args.batch_size, normalize=not args.no_normalize,
                      show_progress=None if not args.quiet else False, prompt=args.prompt,
                      prompt_name=args.prompt_name, precision=args.precision,
                      truncate_dim=args.truncate_dim, layer=args.layer,
                      **long_context_options(args))
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

  # Before the imports: absl (via orbax) calls logging.basicConfig() when imported, which made
  # a later call a no-op and hid jaxemb's INFO lines (resume, evaluations). INFO only for our
  # own loggers: the libraries' INFO output is noise here.
  logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
  logging.getLogger("jaxemb").setLevel(logging.INFO)
  from jaxemb.train.config import apply_overrides, load_config
  from jaxemb.train.loop import run
  config = load_config(args.config)
  apply_overrides(config, overrides)
  # A recipe whose config is several loop runs in sequence (OptEmbed's stages) drives them
  # through its `drive(config, workdir)` (None: one run of the loop).
  from jaxemb.recipes import get as get_recipe
  drive = getattr(get_recipe(config.get("recipe")), "drive", None)
  summary = (drive(config, args.workdir) if drive else None) or run(config, args.workdir)
  final = {k: v for k, v in summary["metrics"].items() if k in ("loss", "accuracy", "lr")}
  if final:
    print(f"step {summary['step']}: {final}" + (" (preempted)" if summary["preempted"] else ""))
  else:
    print(f"{args.workdir} is already at step {summary['step']}: nothing to train "
          "(delete it to start over)")
  table = comparison_table(args.workdir, summary["recipe"].table_metrics)
  if table:
    print(table)
  if summary.get("export"):
    print(f"exported a sentence-transformers model to {summary['export']}")


def comparison_table(workdir: str, metrics=None) -> str:
  """Before vs after training (vs model-free baselines) from the run's final evaluations.

  Reads `metrics.jsonl` (the evaluation rows written at step 0 and at the last step) and
  `config.json` (which tasks and baselines the final evaluators ran: labels come from the
  task table, `jaxemb.tasks`). `metrics` default to the run's recipe's `table_metrics`.
  """
  from jaxemb import tasks
  from jaxemb.train.metrics import read_metrics
  rows = [r for r in read_metrics(workdir) if any("/" in k for k in r)]
  config_file = os.path.join(workdir, "config.json")
  if not rows or not os.path.isfile(config_file):
    return ""
  with open(config_file) as f:
    config = json.load(f)
  if metrics is None:
    from jaxemb import recipes
    metrics = recipes.get(config.get("recipe", "text_pairs")).table_metrics
  last_step = max(r["step"] for r in rows)
  start = {k: v for r in rows if r["step"] == 0 for k, v in r.items()}
  end = {k: v for r in rows if r["step"] == last_step for k, v in r.items()}
  before, after = "before training", "after training"
  if config.get("model", {}).get("pretrained"):
    before, after = "zero-shot", "fine-tuned"
  models, baselines = [], []  # (label, row, metric prefix): model rows first
  for spec in config.get("final_evaluators") or []:
    split = spec.get("split", "validation")
    if spec.get("baseline"):
      label = tasks.get(spec["task"]).baselines[spec["baseline"]][0]
      baselines.append((f"{label}, {split}", start, f"{split}_{spec['baseline']}"))
    elif last_step > 0:
      models.append((f"{before}, {split}", start, split))
      models.append((f"{after} (step {last_step}), {split}", end, split))
  columns = [c for c in models + baselines if any(k.startswith(c[2] + "/") for k in c[1])]
  if not columns or not metrics:
    return ""
  width = max(len(c[0]) for c in columns)
  lines = [" " * width + "".join(f"{m:>12}" for m in metrics)]
  for label, row, prefix in columns:
    lines.append(f"{label:<{width}}" + "".join(
        f"{row.get(f'{prefix}/{m}', float('nan')):>12.4f}" for m in metrics))
  return "\n".join(lines)


def _eval(args) -> None:
  import jaxemb
  from jaxemb import tasks
  task, split = tasks.parse(args.task)
  model = jaxemb.load_pretrained(args.model)
  options = long_context_options(args)
  check_long_context(model, options)  # before the task's data are built
  size = {k: v for k, v in (("truncate_dim", args.truncate_dim), ("layer", args.layer))
          if v is not None}
  model.module.check_size(size.get("layer"), size.get("truncate_dim"))
  embed = lambda texts: jaxemb.encode(model, texts, batch_size=args.batch_size,
                                      show_progress=not args.quiet, **options, **size)
  metrics = tasks.evaluate(task, split, embed)
  metrics = {"task": args.task, "model": str(args.model), **options, **size, **metrics}
  print(json.dumps(metrics))


def _compare(args) -> None:
  import jaxemb
  from jaxemb import tasks
  from jaxemb.evaluate import retrieval, significance
  task, split = tasks.parse(args.task)
  options = long_context_options(args)
  models = [jaxemb.load_pretrained(path) for path in args.models]
  for model in models:
    check_long_context(model, options)
  data = task.load(split, None)
  if not isinstance(data, dict) or not {"queries", "corpus", "relevant"} <= set(data):
    raise UserError(f"task {task.name!r} has no retrieval data (queries, corpus, relevant): "
                    "compare needs per-query retrieval scores")
  scores = []
  for model in models:
    embed = lambda texts, model=model: jaxemb.encode(
        model, texts, batch_size=args.batch_size, show_progress=not args.quiet, **options)
    scores.append(retrieval.evaluate_retrieval(
        embed, embed, data["queries"], data["corpus"], data["relevant"],
        ks=data.get("ks", (1, 10, 100)), per_query=True))
  result = {name: significance.compare(scores[0][name], scores[1][name],
                                       confidence=args.confidence, resamples=args.resamples,
                                       seed=args.seed)
            for name in scores[0]}
  print(f"{'metric':<12}{'A':>9}{'B':>9}{'B - A':>9}  {args.confidence:.0%} interval"
        f"{'p':>11}")
  for name, r in result.items():
    print(f"{name:<12}{r['mean_a']:>9.4f}{r['mean_b']:>9.4f}{r['diff']:>+9.4f}  "
          f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]{r['p_value']:>9.4f}")
  print(json.dumps({"task": args.task, "model_a": str(args.models[0]),
                    "model_b": str(args.models[1]), **options, "metrics": result}))


def add_long_context_arguments(parser: argparse.ArgumentParser) -> None:
  """--max-seq-length / --position-scaling (see `jaxemb.long_context`)."""
  parser.add_argument("--max-seq-length", type=int,
                      help="tokens kept per text (default: the model's own); past the trained "
                           "positions give --position-scaling")
  parser.add_argument("--position-scaling",
                      help="long-context method: pcw, gp, rp, pi (absolute positions); pi, ntk, "
                           "self_extend (rotary)")
  parser.add_argument("--attention-scaling", action="store_true",
                      help="LongEmbed's attention scaling of texts past the trained length "
                           "(logits x log n / log trained; not with pcw)")


def check_long_context(model, options: dict) -> None:
  """Refuses `long_context_options` that do not apply to `model` (ValueError naming them)."""
  if options:
    from jaxemb import long_context
    long_context.check_method(model, options.get("max_seq_length"),
                              options.get("position_scaling"))


def long_context_options(args) -> dict:
  """The long-context keyword arguments of `jaxemb.encode` that the flags set."""
  options = {k: v for k in ("max_seq_length", "position_scaling")
             if (v := getattr(args, k, None)) is not None}
  if getattr(args, "attention_scaling", False):
    options["attention_scaling"] = True
  return options


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxemb", description=__doc__)
  parser.add_argument("--no-compile-cache", action="store_true",
                      help="do not keep compiled programs in ~/.cache/jaxemb/xla")
  parser.add_argument("--debug", action="store_true",
                      help="show the Python traceback of an error, not just its message")
  dist = parser.add_argument_group("multi-process (see launch/)")
  dist.add_argument("--coordinator", help="host:port of process 0 (jax.distributed)")
  dist.add_argument("--num-processes", type=int, default=1)
  dist.add_argument("--process-id", type=int, default=0)
  dist.add_argument("--cpu-devices", type=int, default=0,
                    help="CPU devices per process (CPU-only multi-process runs)")
  dist.add_argument("--auto-distributed", action="store_true",
                    help="jax.distributed.initialize() with no arguments: the cluster (TPU pod, "
                         "SLURM, ...) supplies coordinator and process ids")
  sub = parser.add_subparsers(dest="command", required=True)

  enc = sub.add_parser("encode", help="embed one text per line of a file into a .npy array")
  enc.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or directory")
  enc.add_argument("--input", required=True, help="UTF-8 text file, one text per line ('-': stdin)")
  enc.add_argument("--output", required=True, help="where to write the float32 [N, D] .npy")
  enc.add_argument("--batch-size", type=int, default=64)
  enc.add_argument("--no-normalize", action="store_true", help="skip L2 normalisation")
  enc.add_argument("--prompt", help="text prepended to every input")
  enc.add_argument("--prompt-name", help="a prompt stored with the model (query, document, ...)")
  enc.add_argument("--precision", default="float32",
                   choices=["float32", "int8", "uint8", "binary", "ubinary"],
                   help="quantise the embeddings as sentence-transformers' quantize_embeddings")
  enc.add_argument("--truncate-dim", type=int, help="keep the first D dimensions, then normalise")
  enc.add_argument("--layer", type=int, help="pool this layer's hidden states (1-based)")
  enc.add_argument("--quiet", action="store_true", help="no progress bar")
  add_long_context_arguments(enc)
  enc.set_defaults(func=_encode)

  demo = sub.add_parser("demo", help="encode a few built-in sentences, print similarities")
  demo.add_argument("--model", default="all-MiniLM-L6-v2")
  demo.set_defaults(func=_demo)

  ev = sub.add_parser("eval", help="evaluate a model on a task; the last line printed is a "
                                    "JSON object of metrics")
  ev.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or directory")
  ev.add_argument("--task", default="stdlib_code_search:test", help="TASK[:SPLIT]")
  ev.add_argument("--batch-size", type=int, default=64)
  ev.add_argument("--truncate-dim", type=int, help="keep the first D dimensions, then normalise")
  ev.add_argument("--layer", type=int, help="pool this layer's hidden states (1-based)")
  ev.add_argument("--quiet", action="store_true", help="no progress bar")
  add_long_context_arguments(ev)
  ev.set_defaults(func=_eval)

  cmp = sub.add_parser("compare", help="is model B better than model A on a task's queries? "
                                        "Paired bootstrap interval and randomization test of "
                                        "B - A per metric; the last line printed is JSON")
  cmp.add_argument("--models", nargs=2, required=True, metavar=("A", "B"),
                   help="two model names or directories")
  cmp.add_argument("--task", default="stdlib_code_search:test", help="TASK[:SPLIT] (retrieval)")
  cmp.add_argument("--confidence", type=float, default=0.95, help="of the bootstrap interval")
  cmp.add_argument("--resamples", type=int, default=10_000,
                   help="bootstrap resamples and random sign vectors")
  cmp.add_argument("--seed", type=int, default=0)
  cmp.add_argument("--batch-size", type=int, default=64)
  cmp.add_argument("--quiet", action="store_true", help="no progress bar")
  add_long_context_arguments(cmp)
  cmp.set_defaults(func=_compare)

  # Sub-commands that live with the code they drive (one table, filled here).
  for module, add_parser in (("jaxemb.mining", "add_mine_parser"),
                             ("jaxemb.adapt.merge", "add_merge_parser"),
                             ("jaxemb.adapt.transfer", "add_transfer_parser"),
                             ("jaxemb.static_export", "add_distill_parser")):
    getattr(importlib.import_module(module), add_parser)(sub)

  train = sub.add_parser("train", help="train per a config file; extra --config.key=value "
                                        "arguments override config entries")
  train.add_argument("--config", required=True, help="configs/<name>.py[:arg]")
  train.add_argument("--workdir", required=True, help="run directory (resumed if it exists)")
  train.set_defaults(func=_train, takes_overrides=True)
  return parser


def _init_jax(args) -> None:
  """Persistent compile cache + multi-process set-up; before anything touches a device.

  The cache makes every later `jaxemb ...` process skip the compiles of an earlier one (most of
  a short CPU job's time); `JAX_COMPILATION_CACHE_DIR` or `--no-compile-cache` override it.
  """
  import jax
  if not args.no_compile_cache and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    jax.config.update("jax_compilation_cache_dir",
                      os.path.expanduser("~/.cache/jaxemb/xla"))
  if args.cpu_devices:
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  if args.auto_distributed:
    if args.coordinator:
      raise ValueError("give either --auto-distributed or --coordinator, not both")
    jax.distributed.initialize()
  elif args.coordinator:
    if args.cpu_devices:
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id)


# What a user's mistake raises (a bad value, a missing file, an unknown name): one line, not a
# traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError)


def main(argv: list[str] | None = None) -> None:
  """`jaxemb ...`: user errors print `jaxemb: error: ...` and exit 2 (`--debug`: traceback)."""
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  if getattr(args, "takes_overrides", False):
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
      parser.error(f"unrecognized arguments: {' '.join(bad)}")
  elif extra:
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  try:
    _init_jax(args)
    if getattr(args, "takes_overrides", False):
      args.func(args, extra)
    else:
      args.func(args)
  except USER_ERRORS as e:
    if args.debug:
      raise
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    parser.exit(2, f"{parser.prog}: error: {message} (--debug for the traceback)\n")


if __name__ == "__main__":
  main()
