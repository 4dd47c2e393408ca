#!/usr/bin/env bash
# N processes of clipjax.main on this host, joined by JAX's distributed runtime on localhost.
#
#   launch/local.sh NUM_PROCESSES --config configs/tiny.py --workdir DIR [more clipjax.main flags]
#
# Environment:
#   CPU_DEVICES_PER_PROCESS=N  simulate N CPU devices in each process (JAX_PLATFORMS=cpu, gloo collectives)
#   GPUS_PER_PROCESS=N         give process i the GPUs i*N .. i*N+N-1 (--local_device_ids)
#   PORT=P                     coordinator port (default: a free one)
# Exits with the first non-zero exit status; if one process fails the others are stopped.
set -uo pipefail
NPROC=${1:?usage: launch/local.sh NUM_PROCESSES CLIPJAX_MAIN_FLAGS...}
shift
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
PYTHON=${PYTHON:-python3}
EXTRA=()
if [[ -n "${CPU_DEVICES_PER_PROCESS:-}" ]]; then
  export JAX_PLATFORMS=cpu
  EXTRA+=(--num_cpu_devices="${CPU_DEVICES_PER_PROCESS}")
fi
pids=()
for ((i = 0; i < NPROC; i++)); do
  args=("${EXTRA[@]}")
  if [[ -n "${GPUS_PER_PROCESS:-}" ]]; then
    ids=$(seq -s, $((i * GPUS_PER_PROCESS)) $((i * GPUS_PER_PROCESS + GPUS_PER_PROCESS - 1)))
    args+=(--local_device_ids="${ids}")
  fi
  "$PYTHON" -m clipjax.main "$@" --coordinator_address="127.0.0.1:${PORT}" --num_processes="$NPROC" \
    --process_id="$i" "${args[@]}" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
status=0
for ((n = 0; n < NPROC; n++)); do
  wait -n
  rc=$?
  if [[ $rc -ne 0 && $status -eq 0 ]]; then
    status=$rc
    echo "launch/local.sh: a process exited with status $rc; stopping the others" >&2
    sleep 5
    kill -TERM "${pids[@]}" 2>/dev/null
  fi
done
exit $status
