# STAND-IN for the official python:3.12-slim (see README.md): the metadata on top of python-slim.sh's root filesystem.
ARG ROOTFS
FROM ${ROOTFS}
ARG PYTHON_VERSION
LABEL org.opencontainers.image.description="STAND-IN for python:3.12-slim, built from Debian bookworm minbase and this machine's CPython; only for where no registry is reachable (deploy/standins/)"
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHON_VERSION=${PYTHON_VERSION}
CMD ["python3"]
