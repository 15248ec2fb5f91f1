# STAND-IN for the official postgres image (see README.md): the metadata and entrypoint on top of postgres.sh's
# root filesystem, with the official image's conventions (PGDATA, the init directory, uid 999, SIGINT to stop).
ARG ROOTFS
FROM ${ROOTFS}
ARG PG_MAJOR
LABEL org.opencontainers.image.description="STAND-IN for postgres, built from Debian trixie minbase and Debian's postgresql-${PG_MAJOR}; only for where no registry is reachable (deploy/standins/)"
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PG_MAJOR=${PG_MAJOR} \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh \
    && mkdir -p /docker-entrypoint-initdb.d "$PGDATA" /var/run/postgresql \
    && chown postgres:postgres "$PGDATA" /var/run/postgresql \
    && chmod 1777 "$PGDATA" && chmod 3777 /var/run/postgresql
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
