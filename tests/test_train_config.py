"""Configs and the train CLI: overrides are typed, and bad configs fail before any compile."""

import jax
import pytest

from jaxemb import cli
from jaxemb.train import loop
from jaxemb.train.config import apply_overrides, base_config, load_config, parse_arg

SMOKE = "configs/smoke.py:runlocal"


@pytest.fixture
def config():
  c = load_config(SMOKE)
  c.progress = False
  return c


# ---------------------------------------------------------------------------------------------
# Loading and overrides.
# ---------------------------------------------------------------------------------------------

def test_runlocal_is_the_small_variant():
  small, full = load_config(SMOKE), load_config("configs/smoke.py")
  assert small.total_steps < full.total_steps
  assert small.config_spec == SMOKE
  loop.make_recipe(small)  # validates the loop's and the recipe's keys
  loop.make_recipe(full)


def test_missing_config_file_raises():
  with pytest.raises(FileNotFoundError, match="nope.py"):
    load_config("configs/nope.py")


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("True", True), ("1", True), ("yes", True),
    ("false", False), ("0", False), ("No", False)])
def test_bool_override(config, text, expected):
  config.progress = not expected
  apply_overrides(config, [f"--config.progress={text}"])
  assert config.progress is expected


def test_typed_overrides(config):
  apply_overrides(config, ["--config.total_steps=7", "--config.optim.lr=1",
                           "--config.optim.eps=1e-6", "--config.best_metric=0.5",
                           "--config.mesh.data=2", "--config.optim.decay=linear"])
  assert config.total_steps == 7 and type(config.total_steps) is int
  # An int literal for a float field becomes a float, not an int that later breaks math.
  assert config.optim.lr == 1.0 and type(config.optim.lr) is float
  assert config.optim.eps == 1e-6
  # A str field keeps the text as written, even when it looks like a number.
  assert config.best_metric == "0.5"
  assert config.mesh.data == 2
  assert config.optim.decay == "linear"


@pytest.mark.parametrize("override, fragment", [
    ("--config.total_steps=1.5", "total_steps"),
    ("--config.total_steps=many", "many"),
    ("--config.total_steps=True", "True"),  # bool is an int subclass: still rejected
    ("--config.optim.lr=fast", "fast"),
    ("--config.optim.lr=True", "True"),
    ("--config.progress=maybe", "maybe"),
])
def test_bad_override_values_name_the_value(config, override, fragment):
  with pytest.raises(ValueError, match=fragment):
    apply_overrides(config, [override])


@pytest.mark.parametrize("override, fragment", [
    ("--config.nope=1", "nope"),
    ("--config.optim.nope=1", "optim.nope"),
    ("--config.nosection.lr=1", "nosection"),
    ("--config.total_steps.x=1", "total_steps"),  # not a section
    ("--config.total_steps", "key=value"),
])
def test_unknown_override_keys_raise(config, override, fragment):
  with pytest.raises(ValueError, match=fragment):
    apply_overrides(config, [override])


def test_cli_rejects_unknown_config_key(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["train", "--config", SMOKE, "--workdir", str(tmp_path), "--config.nope=1"])
  assert exit_info.value.code == 2
  assert "jaxemb: error: unknown config key 'nope'" in capsys.readouterr().err
  assert not (tmp_path / "config.json").exists()  # failed before the run started
  with pytest.raises(ValueError, match="nope"):  # --debug: the exception itself
    cli.main(["--debug", "train", "--config", SMOKE, "--workdir", str(tmp_path),
              "--config.nope=1"])


def test_cli_rejects_stray_arguments(tmp_path):
  with pytest.raises(SystemExit):
    cli.main(["train", "--config", SMOKE, "--workdir", str(tmp_path), "--steps=3"])


def test_cli_parses_the_multi_process_flags():
  args, extra = cli.build_parser().parse_known_args(
      ["--coordinator", "h:1234", "--num-processes", "4", "--process-id", "3",
       "--cpu-devices", "2", "train", "--config", SMOKE, "--workdir", "w", "--config.seed=1"])
  assert (args.coordinator, args.num_processes, args.process_id, args.cpu_devices) == (
      "h:1234", 4, 3, 2)
  assert not args.auto_distributed
  assert extra == ["--config.seed=1"]


def test_auto_distributed_initialises_without_arguments(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr("jax.distributed.initialize", lambda *a, **k: calls.append((a, k)))
  train = ["train", "--config", SMOKE, "--workdir", str(tmp_path), "--config.nope=1"]
  with pytest.raises(ValueError, match="nope"):  # stops the run right after the set-up
    cli.main(["--debug", "--auto-distributed", *train])
  assert calls == [((), {})]  # the TPU / SLURM environment supplies everything
  with pytest.raises(ValueError, match="not both"):
    cli.main(["--debug", "--auto-distributed", "--coordinator", "h:1", *train])
  assert len(calls) == 1


# ---------------------------------------------------------------------------------------------
# Validation in `run`: raised before any compile or file is written.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, key", [
    (None, "nope"), ("model", "nope"), ("optim", "learning_rate"), ("objective", "temp")])
def test_unknown_config_keys_raise(config, tmp_path, section, key):
  with config.unlocked():
    (config if section is None else config[section])[key] = 1
  name = key if section is None else f"{section}.{key}"
  with pytest.raises(ValueError, match=name):
    loop.run(config, str(tmp_path))


def test_unknown_encoder_option_raises(config, tmp_path):
  config.model.encoder_options.hidden = 8
  with pytest.raises(ValueError, match="hidden"):
    loop.run(config, str(tmp_path))


@pytest.mark.parametrize("mesh, fragment", [
    (dict(data=3), "3"),                              # 3 devices, but there are 8
    (dict(data=2, fsdp=2, tensor=1), "but there are 8"),
    (dict(data=-1, fsdp=3), "does not divide"),
    (dict(data=-1, fsdp=-1), "at most one"),
    (dict(data=8, pipeline=1), "pipeline"),
])
def test_mesh_not_matching_the_devices_raises(config, tmp_path, mesh, fragment):
  config.mesh = mesh
  with pytest.raises(ValueError, match=fragment):
    loop.run(config, str(tmp_path))


def test_batch_not_divisible_by_data_parallel_size_raises(config, tmp_path):
  config.batch_size = 12  # data=8 by default
  with pytest.raises(ValueError, match=r"batch_size=12 .* data-parallel size 8"):
    loop.run(config, str(tmp_path))
  config.batch_size, config.mesh = 12, dict(data=2, fsdp=2, tensor=2)  # dp = 4 divides 12 ...
  config.microbatches = 5  # ... but 5 microbatches do not
  with pytest.raises(ValueError, match="microbatches=5"):
    loop.run(config, str(tmp_path))


@pytest.mark.parametrize("key, value, fragment", [
    ("batch_size", 0, "batch_size"), ("total_steps", 0, "total_steps"),
    ("nonfinite", "ignore", "ignore"), ("stop_at_step", 21, "stop_at_step=21"),
    ("keep_checkpoints", 0, "keep")])
def test_out_of_range_values_raise(config, tmp_path, key, value, fragment):
  config[key] = value
  with pytest.raises(ValueError, match=fragment):
    loop.run(config, str(tmp_path))



# ---------------------------------------------------------------------------------------------
# Shared base config and the config argument parser.
# ---------------------------------------------------------------------------------------------

def test_parse_arg_combines_options():
  arg = parse_arg("runlocal, transformer,steps=7,lr=0.5,name=x", runlocal=False,
                  transformer=False, steps=100, lr=1.0, name="", extra=False)
  assert (arg.runlocal, arg.transformer, arg.extra) == (True, True, False)
  assert (arg.steps, arg.lr, arg.name) == (7, 0.5, "x") and type(arg.steps) is int
  assert parse_arg(None, runlocal=False).runlocal is False
  assert parse_arg("runlocal=false", runlocal=True).runlocal is False


@pytest.mark.parametrize("arg, fragment", [
    ("runlcal", r"unknown config argument 'runlcal'.*runlocal"),
    ("steps", r"'steps' needs a value"),
    ("steps=many", r"steps='many' is not a int"),
    ("runlocal=maybe", r"runlocal='maybe' is not a boolean"),
])
def test_parse_arg_rejects_bad_words(arg, fragment):
  with pytest.raises(ValueError, match=fragment):
    parse_arg(arg, runlocal=False, steps=1)


def test_combined_config_arguments():
  both = load_config("configs/codesearch_s4d.py:runlocal,transformer")
  assert both.model.encoder == "transformer" and both.total_steps == 4
  assert load_config("configs/codesearch_s4d.py:transformer").total_steps == 200
  assert load_config("configs/codesearch_s4d.py:runlocal").model.encoder == "ssm"
  with pytest.raises(ValueError, match="unknown config argument 'tiny'"):
    load_config("configs/codesearch_s4d.py:tiny")


def test_experiment_configs_state_only_what_differs_from_the_base():
  base = base_config(recipe="text_pairs")
  for spec in ("configs/smoke.py", "configs/codesearch_minilm.py", "configs/codesearch_s4d.py"):
    config = load_config(spec)
    assert config.recipe == "text_pairs"
    assert set(base.keys()) <= set(config.keys())
    loop.make_recipe(config)


# ---------------------------------------------------------------------------------------------
# Objectives of the text_pairs recipe: one table.
# ---------------------------------------------------------------------------------------------

def test_every_library_loss_is_a_text_pairs_objective():
  from jaxemb import objectives
  from jaxemb.recipes import text_pairs
  assert set(objectives.LOSSES) <= set(text_pairs.PAIR_LOSSES)


def test_unknown_objective_lists_the_valid_ones(config, tmp_path):
  config.objective.name = "triplet"
  with pytest.raises(ValueError, match=r"unknown objective 'triplet'.*info_nce.*matryoshka"):
    loop.run(config, str(tmp_path))
  config.objective.name = "matryoshka"
  with pytest.raises(ValueError, match=r"needs objective.dims"):
    loop.run(config, str(tmp_path))


def test_matryoshka_objective_trains(config, tmp_path):
  config.objective.update(name="matryoshka", dims=(32, 16, 8), weights=(1.0, 1.0, 0.5))
  config.total_steps, config.optim.warmup_steps = 3, 1
  summary = loop.run(config, str(tmp_path))
  metrics = summary["metrics"]
  assert {"loss@d32", "loss@d16", "loss@d8"} <= set(metrics)
  want = metrics["loss@d32"] + metrics["loss@d16"] + 0.5 * metrics["loss@d8"]
  assert metrics["loss"] == pytest.approx(want, rel=1e-5)
