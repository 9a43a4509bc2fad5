# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim Debian as a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src examples/bench tests/api && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/api/main.rs \
    && echo 'fn main() {}' > examples/bench/main.rs \
    && cargo build --release --locked --bin collabkit \
    && rm -rf src examples tests
COPY config ./config
COPY migrations ./migrations
COPY docs ./docs
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin collabkit

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin collabkit \
    && mkdir -p /data && chown collabkit:collabkit /data && chmod 0700 /data
COPY --from=build /src/target/release/collabkit /usr/local/bin/collabkit
USER collabkit
WORKDIR /data
ENV COLLABKIT_BIND=0.0.0.0:8080 \
    COLLABKIT_DATA_DIR=/data \
    COLLABKIT_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["collabkit", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["collabkit"]
CMD ["serve"]
