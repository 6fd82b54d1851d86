"""Smoke test: a tiny random transformer learns synthetic pairs in seconds on CPU.

    jaxemb train --config configs/smoke.py --workdir runs/smoke
    jaxemb train --config configs/smoke.py:runlocal --workdir /tmp/smoke --config.total_steps=40

Used by the tests and by anyone checking an install.
"""

import common


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False)
  c = common.base_config(recipe="text_pairs")
  c.model = dict(
      encoder="transformer",
      encoder_options=dict(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4,
                           intermediate_size=64, max_position_embeddings=32, dropout_rate=0.1,
                           attention_dropout_rate=0.0),
      pooling="mean", pooling_options={}, normalize=True, pretrained="", dtype="float32",
      max_seq_length=0)
  c.data = dict(name="synthetic_pairs", num_examples=2048, seq_len=16, vocab_size=128,
                noise=0.25, seed=0)
  c.objective = dict(name="info_nce", scale=20.0, learnable_scale=False, max_scale=100.0,
                     bias=-10.0, symmetric=True, label_smoothing=0.0)
  c.gradcache_chunk = 0
  c.optim.update(lr=3e-3, warmup_steps=5)
  c.total_steps = 20 if arg.runlocal else 100
  c.log_every = 1 if arg.runlocal else 10
  c.checkpoint_every = 10 if arg.runlocal else 50
  c.keep_checkpoints = 3
  return c
