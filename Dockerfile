# The Hosting System server: HostService endpoints, http: output locations and the admin API, under gunicorn.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 dicomhost
WORKDIR /opt/dicom-host
COPY pyproject.toml README.md LICENSE ./
COPY wsdl ./wsdl
COPY hosting_service ./hosting_service
COPY client ./client
RUN pip install . && mkdir -p /var/lib/dicom-host && chown dicomhost /var/lib/dicom-host

USER dicomhost
VOLUME /var/lib/dicom-host
EXPOSE 8080
# Applications in other containers cannot share the host's filesystem: offer http: output locations only.
# DICOM_HOST_PUBLIC_URL must be the address by which those applications reach this container.
ENV DICOM_HOST_OUTPUT_PROTOCOLS=http \
    DICOM_HOST_PUBLIC_URL=http://dicom-host:8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
ENTRYPOINT ["dicom-host", "serve", "--bind", "0.0.0.0:8080", "--data-dir", "/var/lib/dicom-host"]
