# syntax=docker/dockerfile:1
# intelmesh container images, built from the repository root:
#   docker build -t intelmesh .                      # target `runtime` (the last stage)
#   docker build --target tools -t intelmesh-tools .
# runtime: the intelmesh binary on distroless/cc (glibc, libgcc, CA roots; no shell, no
#   package manager), as the unprivileged user 65532. It needs nothing else: TLS is rustls,
#   the store is fjall (pure Rust), and the binary links only libc, libm and libgcc_s.
# tools: the same binary with a shell and deploy/enrol.sh, for one-shot jobs (compose's
#   enrolment, the Kubernetes init container that installs keys), also as 65532.
# Both carry /intelmesh/{operators,hub,agency-1,agency-2,agency-3} owned by 65532 (0700):
# a new named volume mounted there takes that owner, so the non-root jobs can write to it.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# Debug info stays out of the image (the release profile keeps line tables for local
# profiling); symbol names stay, for readable backtraces.
ENV CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p intelmesh \
 && install -D -m 0755 target/release/intelmesh /out/intelmesh
RUN for d in operators hub agency-1 agency-2 agency-3; do install -d -m 0700 "/layout/intelmesh/$d"; done \
 && chown -R 65532:65532 /layout/intelmesh

FROM debian:bookworm-slim AS tools
COPY --from=build /out/intelmesh /usr/local/bin/intelmesh
COPY --from=build /layout/ /
COPY --chmod=0755 deploy/enrol.sh /usr/local/bin/intelmesh-enrol
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/intelmesh-enrol"]

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/intelmesh /usr/local/bin/intelmesh
COPY --from=build /layout/ /
USER 65532:65532
# 7700 federation (mutual TLS), 7701 API (mutual TLS; keep it internal), 9464 metrics and
# probes (plain HTTP: /metrics, /livez, /readyz) when the config has a [metrics] section.
EXPOSE 7700 7701 9464
ENTRYPOINT ["/usr/local/bin/intelmesh"]
CMD ["run", "--config", "/intelmesh/node.toml"]
