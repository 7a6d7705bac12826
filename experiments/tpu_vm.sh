#!/usr/bin/env bash
# Runs experiments/train.py as one job on every worker of a Cloud TPU VM (a pod slice).
#
#   experiments/tpu_vm.sh setup NAME ZONE
#   experiments/tpu_vm.sh train NAME ZONE --config trilemma_jax/families/ddgan/config.py:tfds:cifar10 \
#       --workdir /mnt/shared/ddgan_cifar10 [--config.train.steps=...]
#
# `setup` clones this repository's commit (TRILEMMA_REPO, default the `url` of
# setup.cfg; TRILEMMA_COMMIT, default this checkout's HEAD) into ~/trilemma_jax
# on every worker and runs experiments/setup.sh there with jax[tpu]. `train`
# starts the same train.py command on every worker with --distributed; JAX
# detects the slice, each process loads its share of every global batch and
# process 0 writes the logs, samples and reports. The workdir must be one
# directory all workers share (a gcsfuse mount or Filestore at the same path):
# the checkpoint is written by every worker. Re-running `train` with the same
# workdir resumes; a maintenance event (SIGTERM) saves a checkpoint first.
#
# Set TPU_PROJECT to pass --project; TRILEMMA_DRY_RUN=1 prints the gcloud
# commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 3 ] || usage
action=$1 name=$2 zone=$3
shift 3

gcloud_ssh=(gcloud compute tpus tpu-vm ssh "$name" "--zone=$zone" --worker=all)
if [ -n "${TPU_PROJECT:-}" ]; then
  gcloud_ssh+=("--project=$TPU_PROJECT")
fi

run_on_all_workers() {
  if [ "${TRILEMMA_DRY_RUN:-0}" = 1 ]; then
    printf '%q ' "${gcloud_ssh[@]}" "--command=$1"
    echo
  else
    "${gcloud_ssh[@]}" "--command=$1"
  fi
}

case "$action" in
  setup)
    [ $# -eq 0 ] || usage
    repo=${TRILEMMA_REPO:-$(sed -n 's/^url *= *//p' setup.cfg)}
    commit=${TRILEMMA_COMMIT:-$(git rev-parse HEAD)}
    run_on_all_workers "set -e; [ -d ~/trilemma_jax ] || git clone -q $(printf '%q' "$repo") ~/trilemma_jax; \
cd ~/trilemma_jax && git fetch -q origin && git checkout -q $(printf '%q' "$commit") && \
TRILEMMA_ACCELERATOR=tpu bash experiments/setup.sh"
    ;;
  train)
    [ $# -gt 0 ] || usage
    case " $* " in
      *" --workdir"*) ;;
      *) echo "train needs --workdir (a directory every worker shares)" >&2; exit 2 ;;
    esac
    run_on_all_workers "cd ~/trilemma_jax && .venv/bin/python experiments/train.py --distributed \
$(printf '%q ' "$@")"
    ;;
  *)
    usage
    ;;
esac
