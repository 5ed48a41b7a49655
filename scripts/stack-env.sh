#!/usr/bin/env bash
# The secrets of the compose stack, made once with random values and never put into an image:
#   deploy/admin.env  DICOM_HOST_ADMIN_TOKEN (the server and the workers; `dicom-host ... --admin-token-file`)
#   deploy/db.env     POSTGRES_PASSWORD for PostgreSQL, PGPASSWORD for the server (the workers do not get it)
# Existing files are kept. Both are mode 0600 and ignored by git and by the image builds.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077
random() { python3 -c 'import secrets; print(secrets.token_hex(24))'; }
if [ ! -s deploy/admin.env ]; then
  echo "DICOM_HOST_ADMIN_TOKEN=$(random)" >deploy/admin.env
  echo "stack-env: made deploy/admin.env" >&2
fi
if [ ! -s deploy/db.env ]; then
  password=$(random)
  printf 'POSTGRES_PASSWORD=%s\nPGPASSWORD=%s\n' "$password" "$password" >deploy/db.env
  echo "stack-env: made deploy/db.env" >&2
fi
