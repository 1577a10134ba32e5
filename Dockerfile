# syntax=docker/dockerfile:1

# The mde-offboard worker: a static binary on a distroless nonroot image.
#
#   docker build -t mde-offboard .
#   docker run --rm -v "$PWD/deploy/worker.yaml:/etc/mde-offboard/worker.yaml:ro" \
#     -e NATS_URL=nats://nats:4222 -p 9090:9090 mde-offboard

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/worker ./cmd/worker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /usr/local/bin/worker
USER nonroot:nonroot
# /metrics, /healthz and /readyz (--listen).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/worker"]
# Every flag can also be set by its environment variable (NATS_URL, ...);
# a flag given here wins over the variable.
CMD ["--config=/etc/mde-offboard/worker.yaml"]
