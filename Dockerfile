# Flagstaff: one binary, one SQLite file.
#   docker build -t flagstaff .
#   docker run -p 8080:8080 -v flagstaff-data:/data flagstaff

FROM rust:1.95-bookworm AS build
WORKDIR /src

# The dependencies in a layer of their own, rebuilt only when a manifest or Cargo.lock changes:
# every workspace member's manifest, empty sources for each of its targets (cargo reads every
# member to resolve the workspace), the binary built, then the workspace's own crates cleaned so
# the real sources copied over them are compiled whatever their timestamps.
COPY Cargo.toml Cargo.lock ./
COPY eval/Cargo.toml eval/
COPY sdk/rust/Cargo.toml sdk/rust/
COPY bench/Cargo.toml bench/
COPY sdk/node/native/Cargo.toml sdk/node/native/
COPY sdk/python/Cargo.toml sdk/python/
RUN for dir in src eval/src sdk/rust/src bench/src sdk/node/native/src sdk/python/src; do \
        mkdir -p "$dir" && touch "$dir/lib.rs"; \
    done \
    && for main in src/main.rs bench/src/main.rs benches/server.rs benches/operations.rs \
            benches/busy_year.rs eval/benches/engine.rs sdk/rust/benches/client.rs \
            sdk/rust/examples/quickstart.rs; do \
        mkdir -p "$(dirname "$main")" && echo 'fn main() {}' > "$main"; \
    done \
    && cargo build --release --locked --bin flagstaff \
    && cargo clean --release --locked -p flagstaff -p flagstaff-eval

COPY . .
RUN cargo build --release --locked --bin flagstaff \
    && install -D -m 0755 target/release/flagstaff /out/flagstaff \
    && install -d -m 0755 -o 65532 -g 65532 /out/data

# distroless/cc has glibc and libgcc (all the binary links against; SQLite is built in),
# no shell, and a non-root user "nonroot" (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/flagstaff /usr/local/bin/flagstaff
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV FLAGSTAFF_DATA_DIR=/data \
    FLAGSTAFF_BIND=0.0.0.0:8080
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/flagstaff", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/flagstaff"]
CMD ["serve"]
