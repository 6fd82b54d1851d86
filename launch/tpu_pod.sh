#!/usr/bin/env bash
# Multi-host training on a Cloud TPU VM pod slice: the same `jaxemb train` on every worker,
# started over ssh by gcloud. Each worker joins with jax.distributed.initialize() and no
# arguments (--auto-distributed): on a TPU pod the runtime knows the coordinator and process ids.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b launch/tpu_pod.sh configs/smoke.py /mnt/shared/runs/smoke \
#       [--config.key=value ...]
#
# Environment:
#   TPU_NAME, ZONE   the TPU VM and its zone (required); PROJECT optional.
#   REPO_DIR         where the jaxemb checkout lives on every worker (default ~/jaxemb).
#   PYTHON           interpreter on the workers (default python3); e.g. ~/jaxemb/.venv/bin/python.
#   SETUP            optional command run first on every worker, e.g. "git pull && pip install -e .".
#
# WORKDIR must be a directory every worker sees at the same path (NFS / Filestore / gcsfuse):
# each host writes its own shards of every checkpoint there, and process 0 writes the metrics.
set -euo pipefail
usage="usage: TPU_NAME=... ZONE=... $0 CONFIG WORKDIR [--config.key=value ...]"
config=${1:?$usage}
workdir=${2:?$usage}
shift 2
tpu=${TPU_NAME:?$usage}
zone=${ZONE:?$usage}
repo=${REPO_DIR:-"~/jaxemb"}  # expanded by the remote shell, not here
python=${PYTHON:-python3}

gcloud_args=(--zone="$zone" --worker=all)
if [[ -n ${PROJECT:-} ]]; then
  gcloud_args+=(--project="$PROJECT")
fi

# The remote command is one string for the workers' shell: quote the config, workdir and
# overrides; REPO_DIR, PYTHON and SETUP go in as written (so ~ expands on the worker).
train="$python $(printf '%q ' -m jaxemb.cli --auto-distributed train \
  --config "$config" --workdir "$workdir" "$@")"
command="cd $repo && ${SETUP:+$SETUP && }$train"

exec gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" --command="$command"
