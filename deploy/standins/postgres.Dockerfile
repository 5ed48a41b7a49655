# Stand-in for the official postgres:15 image, built by scripts/base-images.sh where no registry is reachable:
# Debian 12's PostgreSQL 15 with the official image's interface where the stack relies on it (postgres-entrypoint.sh).
ARG ROOT_IMAGE=dicom-host-standin/debian:bookworm
FROM ${ROOT_IMAGE}
# The suite's current packages, as the floating official tag it stands in for has them
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
