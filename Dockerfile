# syntax=docker/dockerfile:1
#
# preflight — multi-stage image.
#   docker build -t preflight-api .
# Needs BuildKit (the default builder of current Docker) for the cache mounts below.

ARG RUST_VERSION=1

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /build
# sqlx compile-time checked queries (if any) use the committed `.sqlx/` metadata,
# never a live database.
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true

COPY . .

# The cargo registry, git checkouts and the target directory live in BuildKit cache
# mounts, so a rebuild after a source change only recompiles our own crates. The
# target directory is not part of the image layer, hence the copy in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release -p preflight --locked \
 && cp target/release/preflight /usr/local/bin/preflight \
 && /usr/local/bin/preflight --version

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to PostgreSQL / Redis (rediss://) / Sentry.
# curl: the HEALTHCHECK below, exactly as in the deployment guide.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 preflight \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin preflight \
 && mkdir -p /app/data \
 && chown 10001:10001 /app/data

COPY --from=build /usr/local/bin/preflight /usr/local/bin/preflight

WORKDIR /app

ENV API_HOST=0.0.0.0 \
    API_PORT=8000 \
    PREFLIGHT_ENV=production \
    PREFLIGHT_DATA_DIR=/app/data

# Numeric user so Kubernetes `runAsNonRoot` can verify it.
USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD curl -f http://localhost:8000/ready || exit 1

STOPSIGNAL SIGTERM

ENTRYPOINT ["preflight"]
CMD ["serve"]
