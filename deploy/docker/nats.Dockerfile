# nats-server built from its Go module at the version the services pin.
# Build context: bin/images/nats (see `make images`). JetStream stores in
# /data, owned by the non-root user so a named volume mounted there is
# writable. Configuration is mounted at /etc/nats (deploy/nats).
FROM scratch
COPY nats-server /nats-server
COPY --chown=65534:65534 data /data
USER 65534:65534
# clients, cluster routes, leaf nodes, monitoring
EXPOSE 4222 6222 7422 8222
ENTRYPOINT ["/nats-server"]
CMD ["--config", "/etc/nats/nats.conf"]
