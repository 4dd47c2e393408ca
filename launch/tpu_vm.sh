#!/usr/bin/env bash
# Cloud TPU VM (single- or multi-host slice): run the same command on every worker.
#
#   launch/tpu_vm.sh TPU_NAME ZONE --config configs/clip/vit_b16.py --workdir gs://bucket/runs/b16
#
# On TPU VMs JAX discovers the slice's workers itself (TPU_WORKER_HOSTNAMES), so each worker simply runs
# clipjax.main; the workdir must be shared storage (a GCS bucket or a shared filesystem). Install the repo on the
# workers first (e.g. the same command with `pip install -e .` in place of the python call).
set -euo pipefail
TPU_NAME=${1:?usage: launch/tpu_vm.sh TPU_NAME ZONE CLIPJAX_MAIN_FLAGS...}
ZONE=${2:?zone}
shift 2
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all \
  --command "cd ~/clipjax && python3 -m clipjax.main${ARGS}"
