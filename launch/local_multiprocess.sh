#!/usr/bin/env bash
# Multi-host training on one machine: N processes on localhost, each with D CPU devices, joined
# with jax.distributed over gloo CPU collectives. Every process runs the same command; results
# equal one process with N*D devices.
#
#   launch/local_multiprocess.sh configs/smoke.py:runlocal runs/mp [--config.key=value ...]
#   NUM_PROCESSES=2 DEVICES_PER_PROCESS=4 PORT=12355 launch/local_multiprocess.sh ...
set -euo pipefail
config=${1:?usage: $0 CONFIG WORKDIR [--config.key=value ...]}
workdir=${2:?usage: $0 CONFIG WORKDIR [--config.key=value ...]}
shift 2
n=${NUM_PROCESSES:-2}
devices=${DEVICES_PER_PROCESS:-4}
port=${PORT:-12355}
python=${PYTHON:-python}

pids=()
for ((i = 0; i < n; i++)); do
  JAX_PLATFORMS=cpu "$python" -m jaxemb.cli \
    --coordinator "localhost:$port" --num-processes "$n" --process-id "$i" \
    --cpu-devices "$devices" \
    train --config "$config" --workdir "$workdir" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
