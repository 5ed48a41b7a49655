# Stand-in for the official python:3.11-slim, built by scripts/base-images.sh where no registry is reachable:
# Debian 12's Python 3.11 with pip and venv, `python` and `python3` on PATH, as the official image has them.
ARG ROOT_IMAGE=dicom-host-standin/debian:bookworm
FROM ${ROOT_IMAGE}
# The suite's current packages, as the floating official tag it stands in for has them
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       python3 python3-venv python3-pip python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]
