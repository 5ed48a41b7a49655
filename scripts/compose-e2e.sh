#!/usr/bin/env bash
# The compose stack end to end, for real, as a new user would run it:
#  1. Debian's docker.io (and docker-compose where `docker compose` is missing) when absent; dockerd started
#     when none runs (and stopped at the end: only the one this script started);
#  2. the images: base stand-ins where no registry answers (scripts/base-images.sh), then dicom-host and the
#     apps image (scripts/build-images.sh);
#  3. `up -d` with two workers, wait until the proxy answers /healthz;
#  4. from OUTSIDE the stack, in the host's virtual environment: `dicom-host submit --app mip --wait --output`
#     on generated CT series, results checked by content (scripts/check_mip.py); the same job with
#     `dicom-host run` on the bare machine, for the benchmark;
#  5. the stack restarted: the job and its results are still there (`dicom-host jobs`, `job show`, results);
#  6. a worker container killed while its job's application runs: the job is retried by the other worker and
#     completes (the registry's retries = 1), and no app container is left behind;
#  7. everything torn down: containers, volumes, network, its own dockerd.
# Timings of each step and the benchmark (submit to results in the stack against `dicom-host run`) are printed.
#
# Usage: scripts/compose-e2e.sh    (as root where docker.io must be installed or dockerd started)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-dicomhoste2e}
export DICOM_HOST_NETWORK=${DICOM_HOST_NETWORK:-dicomhoste2e}
export DICOM_HOST_PORT=${DICOM_HOST_PORT:-8080}
export DICOM_HOST_LEASE_SECONDS=${DICOM_HOST_LEASE_SECONDS:-10}
SERVER=http://127.0.0.1:$DICOM_HOST_PORT
WORK=$(mktemp -d /tmp/dicom-host-e2e.XXXXXX)
STARTED=$(date +%s.%N)
LAST=$STARTED
DOCKERD_PID=""
COMPOSE=()

elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }
step() {
  echo "== [$(elapsed "$STARTED") s; previous step $(elapsed "$LAST") s] $*"
  LAST=$(date +%s.%N)
}
fail() { echo "compose-e2e: FAILED: $*" >&2; exit 1; }

teardown() {
  local status=$?
  set +e
  if [ ${#COMPOSE[@]} -gt 0 ]; then
    [ $status -ne 0 ] && "${COMPOSE[@]}" logs --tail=60 >"$WORK/stack.log" 2>&1 && tail -n 120 "$WORK/stack.log"
    echo "== teardown: the stack, its volumes and its network"
    "${COMPOSE[@]}" --profile apps down --volumes --remove-orphans >/dev/null 2>&1
    # app containers of this stack's jobs (on its network) that a dead worker left: none should be there
    docker ps -aq --filter "label=dicom-host.job" --filter "network=$DICOM_HOST_NETWORK" | xargs -r docker rm -f >/dev/null
  fi
  if [ -n "$DOCKERD_PID" ]; then
    echo "== teardown: the dockerd this script started (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -rf "$WORK"
  echo "== compose-e2e: $([ $status -eq 0 ] && echo passed || echo FAILED) in $(elapsed "$STARTED") s"
  exit $status
}
trap teardown EXIT
trap 'exit 124' TERM INT HUP  # a time budget's `timeout` or Ctrl-C: tear down all the same

apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || fail "$* missing, and this is no root with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

# --- 1. engine and compose --------------------------------------------------------------------------------------
step "Docker engine and compose"
command -v dockerd >/dev/null || { echo "installing docker.io"; apt_install docker.io; }
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: $WORK/dockerd.log)"
  dockerd >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -n 30 "$WORK/dockerd.log"; fail "dockerd did not come up"; }
fi
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  command -v docker-compose >/dev/null || { echo "installing docker-compose"; apt_install docker-compose; }
  COMPOSE=(docker-compose)
fi
echo "compose: $("${COMPOSE[@]}" version 2>/dev/null | head -n1)"

# --- 2. images ----------------------------------------------------------------------------------------------------
step "images (base stand-ins where missing, dicom-host, dicom-host-apps)"
scripts/build-images.sh
for image in "${DICOM_HOST_IMAGE:-dicom-host:latest}" "${DICOM_HOST_APPS_IMAGE:-dicom-host-apps:latest}"; do
  # the build's pip configuration was a secret: no layer names it, no file of it is in the image
  ! docker history --no-trunc --format '{{.CreatedBy}}' "$image" | grep -q -E 'pipconf|pipcert|index-url|PIP_' \
    || fail "$image: its history names the pip configuration"
  docker run --rm --entrypoint python3 "$image" -c \
    'import os, sys; sys.exit(any(map(os.path.exists, ("/etc/pip.conf", "/run/secrets/pipconf", "/run/secrets/pipcert"))))' \
    || fail "$image: a pip configuration file is in the image"
  [ "$(docker image inspect -f '{{.Config.User}}' "$image")" = "10001:10001" ] || fail "$image: not user 10001"
done

# --- 3. the stack ---------------------------------------------------------------------------------------------------
step "stack up (db, server, proxy, 2 workers)"
scripts/stack-env.sh
set -a; . deploy/admin.env; set +a
export DOCKER_GID
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
# the shipped registry, and a slow app for the worker-kill check (8 s of work per task)
export DICOM_HOST_APPS_FILE=$WORK/apps.toml
cat deploy/apps.toml - >"$DICOM_HOST_APPS_FILE" <<'EOF'

[apps.slow]
image = "dicom-host-apps:latest"
command = ["dicom-host-misbehaving-app"]
args = ["--process-seconds", "8"]
output_protocols = ["http"]
file_uris = false
retries = 1
EOF
chmod 644 "$DICOM_HOST_APPS_FILE"
"${COMPOSE[@]}" config -q
"${COMPOSE[@]}" up -d --scale worker=2 --no-build

wait_healthy() {
  for _ in $(seq 240); do
    python3 - "$SERVER/healthz" 2>/dev/null <<'EOF' && return 0
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2)
EOF
    sleep 0.5
  done
  fail "the stack did not answer $SERVER/healthz within 120 s"
}
wait_healthy

# --- 4. a job from outside, checked by content; the same on the bare machine -------------------------------------
step "host virtual environment and sample data"
VENV=$REPO/.venv
if [ ! -x "$VENV/bin/dicom-host" ]; then
  VENV=$WORK/venv
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "$REPO"
fi
"$VENV/bin/python" -m hosting_service.dicom.samples "$WORK/sample-data" --series 2 >/dev/null
DH=("$VENV/bin/dicom-host")

# the benchmark: each way BENCH_ROUNDS times, alternating, so that the machine's load weighs on both alike
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
STACK_TIMES=()
BARE_TIMES=()
for round in $(seq "$BENCH_ROUNDS"); do
  step "round $round/$BENCH_ROUNDS: submit --wait in the stack"
  rm -rf "$WORK/results"
  t0=$(date +%s.%N)
  "${DH[@]}" submit --server "$SERVER" --app mip --input "$WORK/sample-data" --wait --output "$WORK/results"
  STACK_TIMES+=("$(elapsed "$t0")")
  "$VENV/bin/python" scripts/check_mip.py "$WORK/sample-data" "$WORK/results"

  step "round $round/$BENCH_ROUNDS: the same job with dicom-host run on the bare machine"
  rm -rf "$WORK/bare-results"
  t0=$(date +%s.%N)
  env -u DICOM_HOST_ADMIN_TOKEN "${DH[@]}" run --app "$VENV/bin/python -m client.examples.mip_app" \
    --input "$WORK/sample-data" --output "$WORK/bare-results"
  BARE_TIMES+=("$(elapsed "$t0")")
  "$VENV/bin/python" scripts/check_mip.py "$WORK/sample-data" "$WORK/bare-results"
done
JOB=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['job']['id'])" "$WORK/results/manifest.json")

# --- 5. restart: jobs and results are kept ------------------------------------------------------------------------
step "stack restarted: job $JOB and its results kept"
"${COMPOSE[@]}" stop >/dev/null 2>&1
"${COMPOSE[@]}" up -d --scale worker=2 --no-build >/dev/null 2>&1
wait_healthy
"${DH[@]}" jobs --server "$SERVER" | grep -q "$JOB" || fail "job $JOB is not listed after the restart"
"${DH[@]}" job show "$JOB" --server "$SERVER" --json >"$WORK/job.json"
python3 - "$WORK/job.json" <<'EOF' || fail "job $JOB after the restart: $(head -c 600 "$WORK/job.json")"
import json, sys
job = json.load(open(sys.argv[1]))
assert job["state"] == "completed", job["state"]
assert job["manifest"] and job["manifest"]["outcome"]["result"] == "completed", job["manifest"]
EOF
"$VENV/bin/python" scripts/check_mip.py "$WORK/sample-data" --server "$SERVER" --job "$JOB"

# --- 6. a worker killed mid-job -----------------------------------------------------------------------------------
step "a worker container killed while its job's application runs"
SLOW=$("${DH[@]}" submit --server "$SERVER" --app slow --input "$WORK/sample-data" \
       | python3 -c "import json, sys; print(json.load(sys.stdin)['id'])") \
  || fail "submit of the slow job failed"
app_container=""
for _ in $(seq 120); do
  app_container=$(docker ps -q --filter "label=dicom-host.job=$SLOW")
  [ -n "$app_container" ] && break
  sleep 0.25
done
[ -n "$app_container" ] || fail "no app container appeared for job $SLOW"
worker_name=$(docker inspect -f '{{ index .Config.Labels "dicom-host.worker" }}' "$app_container")
# a worker is named HOST-PID; its host name is its container's short id
worker_container=$(docker ps -q --filter "id=${worker_name%-*}")
[ -n "$worker_container" ] || fail "no container for worker $worker_name"
docker kill "$worker_container" >/dev/null
echo "killed worker $worker_name (container $worker_container) running app container $app_container"
deadline=$(( $(date +%s) + 120 ))
state=""
while [ "$(date +%s)" -lt "$deadline" ]; do
  state=$("${DH[@]}" job show "$SLOW" --server "$SERVER" --json | python3 -c "import json, sys; print(json.load(sys.stdin)['state'])")
  case $state in completed|failed|canceled) break ;; esac
  sleep 1
done
"${DH[@]}" job show "$SLOW" --server "$SERVER" --json >"$WORK/slow.json"
python3 - "$WORK/slow.json" <<'EOF' || fail "job $SLOW was not recovered: $(head -c 1500 "$WORK/slow.json")"
import json, sys
job = json.load(open(sys.argv[1]))
# retries = 1: the lease of the killed worker expired, the job was queued again and completed elsewhere
assert job["state"] == "completed", (job["state"], job.get("reason"))
assert job["attempts"] == 2, job["attempts"]
assert any(e["kind"] == "lease-expired" for e in job["events"]), [e["kind"] for e in job["events"]]
print(f"job {job['id']}: completed on attempt {job['attempts']} by {job['worker']}")
EOF
for _ in $(seq 60); do
  [ -z "$(docker ps -aq --filter "label=dicom-host.job=$SLOW")" ] && break
  sleep 0.5
done
left=$(docker ps -aq --filter "label=dicom-host.job=$SLOW")
[ -z "$left" ] || fail "app containers of job $SLOW left behind: $left"
echo "no app container of job $SLOW is left"

# --- the figures ----------------------------------------------------------------------------------------------------
step "done"
python3 - "${STACK_TIMES[*]}" "${BARE_TIMES[*]}" <<'EOF'
import statistics, sys
stack, bare = ([float(t) for t in arg.split()] for arg in sys.argv[1:3])
s, b = statistics.median(stack), statistics.median(bare)
print(f"benchmark: MIP job (2 CT series, 32 slices), median of {len(stack)}: submit to results in the stack {s:.2f} s "
      f"(each: {', '.join(f'{t:.2f}' for t in stack)}); dicom-host run on the bare machine {b:.2f} s "
      f"(each: {', '.join(f'{t:.2f}' for t in bare)}); difference {s - b:+.2f} s")
EOF
