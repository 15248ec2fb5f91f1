# STAND-IN for the official nats alpine image (see README.md): nats.sh's root filesystem with nats-server on
# PATH (client 4222, monitoring 8222), and /data, the store the manifests mount, writable by any uid (as the
# postgres stand-in's PGDATA): Docker copies that mode into a new volume, where the kubelet's fsGroup would.
ARG ROOTFS
FROM ${ROOTFS}
LABEL org.opencontainers.image.description="STAND-IN for nats, built from Debian bookworm minbase and Debian's nats-server; only for where no registry is reachable (deploy/standins/)"
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
RUN mkdir -p /data && chmod 1777 /data
VOLUME /data
EXPOSE 4222 8222
CMD ["nats-server"]
