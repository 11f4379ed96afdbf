# Flagstaff: one binary, one SQLite file.
#   docker build -t flagstaff .
#   docker run -p 8080:8080 -v flagstaff-data:/data flagstaff

FROM rust:1.95-bookworm AS build
WORKDIR /src
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
