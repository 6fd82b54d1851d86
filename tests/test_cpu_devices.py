"""`import jaxemb` gives XLA one CPU device per core before JAX starts (`cpu_devices_per_core`)."""

import os
import subprocess
import sys

import pytest

import jaxemb

FLAG = jaxemb.CPU_DEVICES_FLAG


def test_sets_a_power_of_two_of_at_most_8_and_the_cores():
  env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
  count = jaxemb.cpu_devices_per_core(env, modules={})
  cores = len(os.sched_getaffinity(0))
  assert count & (count - 1) == 0 and 1 <= count <= min(cores, 8) and 2 * count > min(cores, 8)
  if count > 1:
    assert env["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {FLAG}={count}"
  else:
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"


def test_leaves_a_started_jax_a_given_count_and_an_opt_out_alone():
  assert jaxemb.cpu_devices_per_core({}, modules={"jax": object()}) is None
  env = {"XLA_FLAGS": f"{FLAG}=3"}
  assert jaxemb.cpu_devices_per_core(env, modules={}) is None and env["XLA_FLAGS"] == f"{FLAG}=3"
  env = {"JAXEMB_CPU_DEVICES": "1"}
  assert jaxemb.cpu_devices_per_core(env, modules={}) == 1 and "XLA_FLAGS" not in env
  env = {"JAXEMB_CPU_DEVICES": "4"}
  assert jaxemb.cpu_devices_per_core(env, modules={}) == 4 and env["XLA_FLAGS"] == f"{FLAG}=4"
  with pytest.raises(ValueError, match="JAXEMB_CPU_DEVICES must be a positive integer, got 'x'"):
    jaxemb.cpu_devices_per_core({"JAXEMB_CPU_DEVICES": "x"}, modules={})


def test_a_fresh_process_sees_the_devices():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAXEMB_CPU_DEVICES"] = "2"
  out = subprocess.run([sys.executable, "-c", "import jaxemb, jax; print(jax.device_count())"],
                       env={**env, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == "2"
