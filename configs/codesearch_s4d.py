"""S4D sentence encoder trained from scratch on the stdlib code-search data.

    jaxemb train --config configs/codesearch_s4d.py --workdir runs/codesearch_s4d
    jaxemb train --config configs/codesearch_s4d.py:transformer --workdir runs/codesearch_tf

`:transformer` trains the same-size transformer (width, depth, FFN, steps, data, tokenizer)
for the side-by-side comparison; `:runlocal` is a tiny check. Both use MiniLM's tokenizer (no
weights) and report validation/test retrieval at the end.
"""

import ml_collections

WIDTH, DEPTH, FFN = 256, 2, 512


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  runlocal = arg == "runlocal"
  encoder = "transformer" if arg == "transformer" else "ssm"
  c = ml_collections.ConfigDict()
  c.seed = 0
  if encoder == "ssm":
    options = dict(vocab_size=30522, hidden_size=WIDTH, num_layers=DEPTH, state_size=64,
                   init="lin", bidirectional=True, intermediate_size=FFN, dropout_rate=0.1)
  else:
    options = dict(vocab_size=30522, hidden_size=WIDTH, num_layers=DEPTH, num_heads=4,
                   intermediate_size=FFN, max_position_embeddings=512, norm_position="pre",
                   position_embedding="rotary", dropout_rate=0.1, attention_dropout_rate=0.0)
  c.model = dict(pretrained="", tokenizer="all-MiniLM-L6-v2", encoder=encoder,
                 encoder_options=options, pooling="mean", pooling_options={}, normalize=True,
                 dtype="float32", max_seq_length=0)
  c.data = dict(name="stdlib_code_search", split="train", data_dir="",
                query_lengths=(16, 32), code_lengths=(64, 128))
  c.objective = dict(name="info_nce", scale=20.0, learnable_scale=False, max_scale=100.0,
                     bias=-10.0, symmetric=True, label_smoothing=0.0)
  c.optim = dict(lr=1e-3, warmup_steps=20, decay="cosine", end_factor=0.0, weight_decay=0.01,
                 b1=0.9, b2=0.98, eps=1e-6, clip_norm=1.0)
  c.mesh = dict(data=-1, fsdp=1, tensor=1)
  c.logical_axis_rules = ()
  c.batch_size = 32
  c.microbatches = 1
  c.gradcache_chunk = 0
  c.total_steps = 200
  c.stop_at_step = 0
  c.log_every = 10
  c.checkpoint_every = 100
  c.keep_checkpoints = 1
  c.best_metric = ""
  c.best_mode = "max"
  c.async_checkpoint = True
  c.nonfinite = "skip"
  c.eval_every = 0
  c.evaluators = []
  c.final_evaluators = [dict(name="code_search", split="test")]
  c.export = False
  c.progress = True
  if runlocal:
    c.model.encoder_options.update(hidden_size=32, num_layers=1, intermediate_size=64)
    c.data.split = "train[:128]"
    c.data.code_lengths = (32,)
    c.batch_size = 16
    c.total_steps = 4
    c.optim.warmup_steps = 1
    c.log_every = 1
    c.final_evaluators = [dict(name="code_search", split="validation[:32]")]
  return c
