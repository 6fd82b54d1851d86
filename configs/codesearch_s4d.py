"""S4D sentence encoder trained from scratch on the stdlib code-search data.

    jaxemb train --config configs/codesearch_s4d.py --workdir runs/codesearch_s4d
    jaxemb train --config configs/codesearch_s4d.py:transformer --workdir runs/codesearch_tf
    jaxemb train --config configs/codesearch_s4d.py:runlocal,transformer --workdir /tmp/tf

`:transformer` trains the same-size transformer (width, depth, FFN, steps, data, tokenizer)
for the side-by-side comparison; `:runlocal` is a tiny check (combinable). Both use MiniLM's
tokenizer (no weights) and report test retrieval at the end.
"""

import common

WIDTH, DEPTH, FFN = 256, 2, 512
TASK = "stdlib_code_search"


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, transformer=False)
  c = common.base_config(recipe="text_pairs")
  if arg.transformer:
    encoder = "transformer"
    options = dict(vocab_size=30522, hidden_size=WIDTH, num_layers=DEPTH, num_heads=4,
                   intermediate_size=FFN, max_position_embeddings=512, norm_position="pre",
                   position_embedding="rotary", dropout_rate=0.1, attention_dropout_rate=0.0)
  else:
    encoder = "ssm"
    options = dict(vocab_size=30522, hidden_size=WIDTH, num_layers=DEPTH, state_size=64,
                   init="lin", bidirectional=True, intermediate_size=FFN, dropout_rate=0.1)
  c.model = dict(pretrained="", tokenizer="all-MiniLM-L6-v2", encoder=encoder,
                 encoder_options=options, pooling="mean", pooling_options={}, normalize=True,
                 dtype="float32", max_seq_length=0)
  c.data = dict(name=TASK, split="train", data_dir="", query_lengths=(16, 32),
                code_lengths=(64, 128))
  c.objective = dict(name="info_nce", scale=20.0, learnable_scale=False, max_scale=100.0,
                     bias=-10.0, symmetric=True, label_smoothing=0.0)
  c.gradcache_chunk = 0
  c.optim.update(lr=1e-3, warmup_steps=20, b2=0.98, eps=1e-6)
  c.total_steps = 200
  c.checkpoint_every = 100
  c.keep_checkpoints = 1
  c.final_evaluators = [dict(task=TASK, split="test")]
  if arg.runlocal:
    c.model.encoder_options.update(hidden_size=32, num_layers=1, intermediate_size=64)
    c.data.split = "train[:128]"
    c.data.code_lengths = (32,)
    c.batch_size = 16
    c.total_steps = 4
    c.optim.warmup_steps = 1
    c.log_every = 1
    c.final_evaluators = [dict(task=TASK, split="validation[:32]")]
  return c
