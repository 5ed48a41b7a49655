#!/usr/bin/env bash
# Build the stack's images: the base images first where missing (scripts/base-images.sh), then the server image
# (dicom-host:latest, DICOM_HOST_IMAGE) and the example apps image (dicom-host-apps:latest, DICOM_HOST_APPS_IMAGE).
#
# This machine's pip configuration (`pip config list`: index URLs, trusted hosts, timeouts, and the certificate
# bundle it names) goes into the build as BuildKit secrets, mounted only while pip runs: no layer and no file of
# the repository keeps it. File-system indexes and constraint files of the machine are left out (a build cannot
# see them).
#
# Usage: scripts/build-images.sh      (env: PYTHON_IMAGE, DICOM_HOST_IMAGE, DICOM_HOST_APPS_IMAGE, DOCKER)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim}
DICOM_HOST_IMAGE=${DICOM_HOST_IMAGE:-dicom-host:latest}
DICOM_HOST_APPS_IMAGE=${DICOM_HOST_APPS_IMAGE:-dicom-host-apps:latest}
# Debian's docker client builds with BuildKit on its own; a newer client without the buildx plugin cannot
DOCKER=${DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker )}
export DOCKER_BUILDKIT=1

scripts/base-images.sh

secrets=$(mktemp -d)
trap 'rm -rf "$secrets"' EXIT
chmod 700 "$secrets"
PIP_SECRETS_DIR=$secrets python3 - <<'PY'
"""pip.conf for the build from this machine's pip configuration; the certificate bundle beside it."""
import os, pathlib, shutil, subprocess

out = pathlib.Path(os.environ["PIP_SECRETS_DIR"])
try:
    listing = subprocess.run(["python3", "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
except OSError:
    listing = ""
settings: dict[str, str] = {}
for line in listing.splitlines():
    key, _, value = line.partition("=")
    name, value = key.rsplit(".", 1)[-1], value.strip().strip("'\"")
    if name in ("index-url", "extra-index-url"):
        urls = [u for u in value.split() if u.startswith(("http://", "https://"))]
        if urls:
            settings[name] = " ".join(urls)
    elif name in ("trusted-host", "timeout", "default-timeout", "retries"):
        settings["timeout" if name == "default-timeout" else name] = value
    elif name == "cert" and os.path.isfile(value):
        shutil.copyfile(value, out / "pipcert")
        settings["cert"] = "/run/secrets/pipcert"
lines = ["[global]", *(f"{k} = {v}" for k, v in sorted(settings.items()))]
(out / "pip.conf").write_text("\n".join(lines) + "\n")
PY
secret_args=(--secret "id=pipconf,src=$secrets/pip.conf")
[ -f "$secrets/pipcert" ] && secret_args+=(--secret "id=pipcert,src=$secrets/pipcert")

for target in server apps; do
  image=$DICOM_HOST_IMAGE
  [ "$target" = apps ] && image=$DICOM_HOST_APPS_IMAGE
  echo "build-images: $image (target $target, base $PYTHON_IMAGE)" >&2
  "$DOCKER" build -q --build-arg BASE_IMAGE="$PYTHON_IMAGE" "${secret_args[@]}" --target "$target" -t "$image" . >/dev/null
done
