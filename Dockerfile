# The kpid image the Helm chart (deploy/helm/kpid) runs.
#
#   docker build -t kpid:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -v kpid-state:/var/lib/kpid \
#     -v $PWD/my-config:/etc/kpid:ro -p 9464:9464 -p 50051:50051 kpid:0.1.0
#
# Builder: the packages of scripts/deps (the same list CI and developers
# use), then scripts/build. Runtime: only the Debian packages holding the
# libraries the binaries load (deploy/docker/runtime-packages derives them
# from the binaries), a non-root user, kpid, kpictl (`kubectl exec kpid-0
# -- kpictl snapshot`) and kpi-loadgen. The recipe is
# checked statically by tests/helm/chart_test.py (DockerfileTest).
#
# No HEALTHCHECK: Kubernetes ignores it (the chart probes /healthz and
# /readyz), and the runtime stage has no HTTP client to run one with.

# Both stages on one Debian point release: the runtime stage installs, by
# name, the library packages the builder's binaries were linked against.
ARG DEBIAN_RELEASE=12.11

FROM debian:${DEBIAN_RELEASE} AS builder
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# Dependencies first, in their own layer: source edits do not reinstall them.
COPY scripts/deps scripts/deps
RUN scripts/deps && rm -rf /var/lib/apt/lists/*
COPY . .
RUN KPID_JOBS="$(nproc)" scripts/build -DKPID_BENCH=OFF \
 && mkdir -p /out \
 && install -m 0755 build/daemon/kpid build/tools/kpictl/kpictl build/tools/loadgen/kpi-loadgen /out/ \
 && deploy/docker/runtime-packages /out/kpid /out/kpictl /out/kpi-loadgen > /out/runtime-packages

FROM debian:${DEBIAN_RELEASE}-slim
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=builder /out/runtime-packages /tmp/runtime-packages
# ca-certificates: TLS to Kafka and Alertmanager (kafka.properties, https URLs).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates $(cat /tmp/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
 && groupadd --system --gid 10001 kpid \
 && useradd --system --uid 10001 --gid kpid --home-dir /var/lib/kpid --create-home \
      --shell /usr/sbin/nologin kpid
COPY --from=builder /out/kpid /out/kpictl /out/kpi-loadgen /usr/local/bin/
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd;
# the chart's podSecurityContext.runAsUser/runAsGroup.
USER 10001:10001
WORKDIR /var/lib/kpid
# state_dir (checkpoints, alert states): the one writable path besides /tmp,
# so the root filesystem can be read-only. The chart mounts a claim here.
VOLUME ["/var/lib/kpid"]
# http (/metrics, /healthz, /readyz) and grpc: the chart's ports.http, ports.grpc.
EXPOSE 9464 50051
ENTRYPOINT ["/usr/local/bin/kpid"]
CMD ["--config=/etc/kpid/kpid.yaml"]
