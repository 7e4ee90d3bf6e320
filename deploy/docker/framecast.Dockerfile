# framecast command: the one-shot `framecast stream ensure` of compose and
# Kubernetes. One static binary, no shell, non-root.
# Build context: bin/images/framecast (see `make images`).
FROM scratch
COPY framecast /framecast
USER 65534:65534
ENTRYPOINT ["/framecast"]
