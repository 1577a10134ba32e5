# syntax=docker/dockerfile:1

# The mde-offboard worker: a static binary on a distroless nonroot image.
#
#   docker build -t mde-offboard .
#   docker run --rm -v "$PWD/deploy/worker.yaml:/etc/mde-offboard/worker.yaml:ro" \
#     -v "$HOME/mde-offboard-secrets:/var/run/secrets/mde-offboard:ro" \
#     -e MDE_OFFBOARD_NATS_URL=nats://nats:4222 -p 9090:9090 mde-offboard
#
# The worker reads every credential file the tenants file names at start:
# deploy/worker.yaml names contoso/client-secret and
# contoso-gov/certificate.pem under /var/run/secrets/mde-offboard/, so
# they go in ~/mde-offboard-secrets, readable by uid 65532.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
# .git is not copied in: say what is built, for --version and
# mde_offboard_build_info:
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t mde-offboard .
ARG VERSION=
ARG REVISION=
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -o /out/ \
      -ldflags="-s -w -X github.com/contoso-secops/mde-offboard/internal/buildinfo.version=${VERSION} -X github.com/contoso-secops/mde-offboard/internal/buildinfo.revision=${REVISION}" \
      ./cmd/worker ./cmd/offboardctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/offboardctl /usr/local/bin/
USER nonroot:nonroot
# /metrics, /healthz and /readyz (--listen).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/worker"]
# Arguments given to docker run replace CMD: the variable keeps the
# tenants file where it is for them too (docker run ... mde-offboard
# --check-config, docker exec ... worker --check-config).
ENV MDE_OFFBOARD_CONFIG=/etc/mde-offboard/worker.yaml
# Every flag can also be set by its environment variable
# (MDE_OFFBOARD_NATS_URL, ...);
# a flag given here wins over the variable.
CMD ["--config=/etc/mde-offboard/worker.yaml"]
