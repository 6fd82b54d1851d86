"""ZeTT hypernetwork for all-MiniLM-L6-v2: predicts token embeddings for any tokenizer.

    jaxemb train --config configs/zett_minilm.py --workdir runs/zett            # full
    jaxemb train --config configs/zett_minilm.py:runlocal --workdir /tmp/zett   # CI-sized
    jaxemb transfer --tokenizer NEW.json --method zett --hypernet runs/zett/export --out DIR

A tokenizer is sampled per batch from the batch index (UnigramLM from the batch's texts with
log-normal noise, or BPE / WordPiece trained on them; 1k-8k tokens); the frozen MiniLM embeds
each text under it (predicted embeddings) and under its own tokenizer, and the hypernetwork
learns to make the two agree, correcting the mean of the pieces (`hyper.residual="mean"`; with
"none", ZeTT's plain output, give it an identity warm-up). `:runlocal,model=DIR` swaps the source
model (the tests use a tiny random one).
"""

import common


def get_config(arg: str | None = None):
  arg = common.parse_arg(arg, runlocal=False, model="all-MiniLM-L6-v2")
  c = common.base_config(recipe="zett")
  c.model = dict(pretrained=arg.model, max_seq_length=0)
  # ZeTT: 3 layers at the model's width, <= 7 source pieces per token. residual="mean": the
  # prediction is a learned correction to the mean of the pieces (FVT), so training starts at
  # `mean` (ZeTT's own is "none").
  c.hyper = dict(num_layers=3, num_heads=12, intermediate_size=1536, max_pieces=7,
                 dropout_rate=0.0, residual="mean")
  c.data = dict(split="train", data_dir="", max_chars=300, student_length=64,
                teacher_length=128, kinds=("unigram", "bpe", "wordpiece"), probs=(0.6, 0.2, 0.2),
                vocab_min=1000, vocab_max=8000, noise_std=1.0, warm_tokens=64)
  # The identity warm-up (ZeTT) has nothing to do when residual="mean": the untrained network
  # already gives one-piece tokens their own embedding. With residual="none" use 200 steps.
  c.objective = dict(loss="cosine", aux_weight=0.5, warmup_steps=0)
  # 3e-4 drove the zero-initialised correction away from `mean` (the distillation loss rose
  # from 0.26 to 0.52 in 50 steps); 3e-5 improved on `mean` in 100 steps (README).
  c.optim.update(lr=3e-5, warmup_steps=50, decay="cosine", weight_decay=0.01)
  c.batch_size = 32
  c.total_steps = 2000
  c.log_every = 10
  c.checkpoint_every = 200
  c.export = True
  if arg.runlocal:
    c.hyper = dict(num_layers=1, num_heads=4, intermediate_size=64, max_pieces=4,
                   dropout_rate=0.0, residual="mean")
    c.data.update(split="train[:64]", max_chars=80, student_length=24, teacher_length=32,
                  vocab_min=300, vocab_max=600, warm_tokens=8)
    c.objective.warmup_steps = 2
    c.optim.update(lr=1e-3, warmup_steps=0)
    c.batch_size = 8
    c.total_steps = 4
    c.log_every = 1
    c.checkpoint_every = 2
    c.progress = False
  return c
