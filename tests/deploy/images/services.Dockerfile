# The tests' stand-ins for the official redis, nginx and prometheus images (no registry is
# reachable here): the test python base plus Debian's packages, one target each, set up as the
# official image is where docker-compose.yml relies on it.
ARG BASE
FROM ${BASE} AS services
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       redis-server nginx prometheus wget >/dev/null \
    && rm -rf /var/lib/apt/lists/*

# redis:7-alpine: redis-server in /data as user redis, protected mode off (its entrypoint's).
FROM services AS redis
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p /data && chown redis:redis /data
VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]

# nginx:1.27-alpine: nginx in the foreground, errors on stderr.
FROM services AS nginx
RUN ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]

# prom/prometheus: /bin/prometheus as user nobody, its data in /prometheus (Debian's build
# keeps it in /var/lib/prometheus/metrics2 when no --storage.tsdb.path is given).
FROM services AS prometheus
RUN mkdir -p /prometheus && chown nobody:nogroup /prometheus \
    && rm -rf /var/lib/prometheus/metrics2 && ln -s /prometheus /var/lib/prometheus/metrics2
VOLUME /prometheus
WORKDIR /prometheus
USER nobody
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
