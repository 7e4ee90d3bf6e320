# Caddy v2 built from its Go module: the load balancer in front of the
# gateways. Build context: bin/images/caddy (see `make images`). The
# Caddyfile is mounted at /etc/caddy/Caddyfile (deploy/caddy); Caddy keeps
# its state under /data, owned by the non-root user.
FROM scratch
COPY caddy /caddy
COPY --chown=65534:65534 data /data
ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/data HOME=/data
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
