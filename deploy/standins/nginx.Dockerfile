# Stand-in for the official nginx image, built by scripts/base-images.sh where no registry is reachable:
# Debian 12's nginx reading /etc/nginx/conf.d/*.conf, in the foreground, logging to the container's output.
ARG ROOT_IMAGE=dicom-host-standin/debian:bookworm
FROM ${ROOT_IMAGE}
# The suite's current packages, as the floating official tag it stands in for has them
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
