# The kpid image the Helm chart (deploy/helm/kpid) runs.
#
#   docker build -t kpid:0.1.0 .
#   docker run --rm -v $PWD/my-config:/etc/kpid:ro -p 9464:9464 kpid:0.1.0
#
# Builder: the packages of scripts/deps (the same list CI and developers
# use), then scripts/build. Runtime: only the Debian packages holding the
# libraries the binaries load (deploy/docker/runtime-packages derives them
# from the binaries), a non-root user, kpid and kpi-loadgen.

FROM debian:bookworm AS builder
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# Dependencies first, in their own layer: source edits do not reinstall them.
COPY scripts/deps scripts/deps
RUN scripts/deps && rm -rf /var/lib/apt/lists/*
COPY . .
RUN KPID_JOBS="$(nproc)" scripts/build -DKPID_BENCH=OFF \
 && mkdir -p /out \
 && install -m 0755 build/daemon/kpid build/tools/loadgen/kpi-loadgen /out/ \
 && deploy/docker/runtime-packages /out/kpid /out/kpi-loadgen > /out/runtime-packages

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=builder /out/runtime-packages /tmp/runtime-packages
# ca-certificates: TLS to Kafka and Alertmanager (kafka.properties, https URLs).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates $(cat /tmp/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
 && groupadd --system --gid 10001 kpid \
 && useradd --system --uid 10001 --gid kpid --home-dir /var/lib/kpid --create-home \
      --shell /usr/sbin/nologin kpid
COPY --from=builder /out/kpid /out/kpi-loadgen /usr/local/bin/
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/kpid
EXPOSE 9464 50051
ENTRYPOINT ["/usr/local/bin/kpid"]
CMD ["--config=/etc/kpid/kpid.yaml"]
