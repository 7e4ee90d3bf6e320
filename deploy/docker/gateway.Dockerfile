# framecast edge gateway: one static binary, no shell, non-root.
# Build context: bin/images/gateway (see `make images`).
FROM scratch
COPY gateway /gateway
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/gateway"]
