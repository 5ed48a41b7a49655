# The dicom-host images, built on BASE_IMAGE (the official Python 3.11 slim image, or the local stand-in of the
# same name that scripts/base-images.sh makes where no registry is reachable):
#   server (the default target): `dicom-host serve`; the same image runs `dicom-host worker`;
#   apps: the example hosted applications (the MIP app...), launched by workers as containers.
# BuildKit builds them (Docker >= 23, or DOCKER_BUILDKIT=1):
#   docker build -t dicom-host:latest .   and   docker build --target apps -t dicom-host-apps:latest .
# A pip configuration the build needs (a package index mirror, a certificate bundle) is given as build secrets,
# which no layer keeps:  --secret id=pipconf,src=pip.conf [--secret id=pipcert,src=ca.pem, named by pip.conf as
# cert = /run/secrets/pipcert]; scripts/build-images.sh makes both from this machine's pip configuration.
ARG BASE_IMAGE=python:3.11-slim

# --- build: a virtual environment with the pinned dependencies, then the project ---------------------------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt ./
RUN --mount=type=secret,id=pipconf,target=/etc/pip.conf --mount=type=secret,id=pipcert \
    python3 -m venv /opt/dicom-host \
    && /opt/dicom-host/bin/pip install --no-cache-dir --requirement constraints.txt
COPY pyproject.toml README.md LICENSE ./
COPY wsdl ./wsdl
COPY client ./client
COPY hosting_service ./hosting_service
RUN --mount=type=secret,id=pipconf,target=/etc/pip.conf --mount=type=secret,id=pipcert \
    /opt/dicom-host/bin/pip install --no-cache-dir --no-deps --constraint constraints.txt . \
    && /opt/dicom-host/bin/pip check

# --- runtime: the environment and an unprivileged user, nothing of the build -------------------------------------
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="dicom-host" \
      org.opencontainers.image.description="DICOM PS3.19 Application Hosting System" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/dicom-host/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/dicom-host --shell /usr/sbin/nologin \
      dicomhost \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/dicom-host
COPY --from=build /opt/dicom-host /opt/dicom-host

# --- apps: the example hosted applications. A worker starts the MIP app with the launch arguments (--hostURL U1
# --applicationURL U2), or another one by the registry entry's command (dicom-host-models-app, ...) ----------------
FROM runtime AS apps
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["dicom-host-mip-app"]
CMD ["--help"]

# --- server (default): `dicom-host serve`; `docker run IMAGE worker --server URL` runs a worker -------------------
FROM runtime AS server
WORKDIR /var/lib/dicom-host
# Applications in other containers share no file system with the server: http: data paths only.
ENV DICOM_HOST_OUTPUT_PROTOCOLS=http DICOM_HOST_FILE_URIS=false
USER 10001:10001
VOLUME /var/lib/dicom-host
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["dicom-host"]
CMD ["serve", "--bind", "0.0.0.0:8080", "--data-dir", "/var/lib/dicom-host"]
