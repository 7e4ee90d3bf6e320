# framecast producer (ingest API): one static binary, no shell, non-root.
# Build context: bin/images/producer (see `make images`).
FROM scratch
COPY producer /producer
USER 65534:65534
EXPOSE 8081
ENTRYPOINT ["/producer"]
