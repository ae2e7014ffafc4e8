# The vault-injector image, for those who build with Docker or in their CI:
#   docker build --build-arg REVISION=$(git rev-parse --short=12 HEAD) -t vault-injector:0.1.0 .
# `make image` writes the same image without Docker or any daemon
# (scripts/build-image.sh reads the final stage of this file);
# scripts/test-image.sh checks that the archive holds exactly what this
# stage describes.
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# A build context usually has no .git: the revision comes in as an argument.
ARG REVISION=unknown
ENV VAULT_INJECTOR_REVISION=${REVISION}
RUN cargo build --locked --config .cargo/static.toml --target x86_64-unknown-linux-gnu \
        --release -p vault-injector --bin vault-injector \
 && cargo build --locked --config .cargo/static.toml --target x86_64-unknown-linux-gnu \
        --profile agent -p vault-injector-agent

# No shell, no package manager, no libc: two static binaries. No CA bundle
# either: the public roots are compiled in (webpki-roots), a private Vault CA
# comes from the chart (vault.caPem) and the API server's CA from the
# service-account mount.
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/vault-injector /usr/local/bin/vault-injector
COPY --from=build /src/target/x86_64-unknown-linux-gnu/agent/vault-injector-agent /usr/local/bin/vault-injector-agent
# Injected agent containers run `vault-injector-agent` by name.
ENV PATH=/usr/local/bin
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/vault-injector"]
LABEL org.opencontainers.image.title="vault-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook and in-pod agent that inject secrets from Vault/OpenBao into pods" \
      org.opencontainers.image.source="https://github.com/vault-injector/vault-injector" \
      org.opencontainers.image.url="https://github.com/vault-injector/vault-injector" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
