# One small image holding both binaries:
#   /nameplane-operator  run by the Helm chart's (and config/'s) operator Deployment
#   /nameplane-dns       run by the operator for every DNSServer
# Build:  docker build --build-arg NAMEPLANE_REVISION=$(git rev-parse HEAD) \
#           -t ghcr.io/nameplane/nameplane:0.1.0 .
# (NAMEPLANE_REVISION becomes the `revision` label of nameplane_build_info/coredns_build_info.)
# The final stage is distroless (glibc, CA certificates, no shell) and runs as the numeric
# non-root user 65532, so its Pods pass PodSecurity `restricted`.

# The toolchain pinned in rust-toolchain.toml; that file itself stays out of the build context
# (.dockerignore): the image's minimal toolchain has no rustfmt/clippy, which it would fetch.
ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
ARG NAMEPLANE_REVISION=unknown
ENV NAMEPLANE_REVISION=${NAMEPLANE_REVISION}
COPY . .
RUN cargo build --release --locked --bin nameplane-operator --bin nameplane-dns \
 && mkdir /out \
 && cp target/release/nameplane-operator target/release/nameplane-dns /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/nameplane-operator /out/nameplane-dns /
USER 65532:65532
# nameplane-dns: DNS on 5353 (UDP and TCP; the Service maps 53 to it), /health, /ready and
# /metrics on 8080. nameplane-operator: /healthz, /readyz and /metrics on 8080.
EXPOSE 5353/udp 5353/tcp 8080/tcp
ENTRYPOINT ["/nameplane-operator"]
