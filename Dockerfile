# syntax=docker/dockerfile:1
# Warden in a container: a release build, then a runtime image with no shell, no package
# manager and no root user. The root filesystem can be mounted read-only: the gateway writes
# only where its configuration says (the API-key database and the audit file), so give it a
# volume there (deploy/kubernetes mounts one at /var/lib/warden).
#
#   docker build -t warden .
#   docker run --read-only -p 8080:8080 -v "$PWD/warden.yaml:/etc/warden/warden.yaml:ro" warden

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p warden-gateway --bin warden \
 && install -D -m 0755 target/release/warden /out/warden

# glibc and CA certificates (for https:// upstreams, JWKS and rediss://), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/warden /usr/local/bin/warden
# The distroless "nonroot" user, by number (Kubernetes checks runAsNonRoot against numbers).
USER 65532:65532
# Public listener, admin listener (health, readiness, metrics: keep it off the public network).
EXPOSE 8080 9901
# No shell in the image: the probe is the binary itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/warden", "health", "--url", "http://127.0.0.1:9901/healthz"]
ENTRYPOINT ["/usr/local/bin/warden"]
CMD ["serve", "--config", "/etc/warden/warden.yaml"]
