# syntax=docker/dockerfile:1
# Multi-stage build of the two ramvault binaries and the example app; one final
# target each, for every platform buildx is asked for (the build stage runs on
# the builder's platform and cross-compiles):
#   docker buildx build --platform linux/amd64,linux/arm64 --target agent \
#     --build-arg VERSION=$(cat VERSION) --build-arg REVISION=$(git rev-parse HEAD) -t ramvault-agent .
#   targets: agent, ramvault, example-app (examples/app)
# `make image` (test/tools/image.sh) does not run this build stage: it
# cross-compiles on the host with the same flags (the `go build` line below is
# read by test/images) and assembles the final stages below with buildah,
# applying exactly their instructions (FROM scratch/a stage, ARG, LABEL,
# COPY --from=build [--chmod], USER, ENTRYPOINT: the only ones it accepts).
ARG BUILDER=golang:1.26
FROM --platform=$BUILDPLATFORM ${BUILDER} AS build
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
ARG GOPROXY=https://proxy.golang.org,direct
ENV CGO_ENABLED=0 GOMODCACHE=/gomodcache GOCACHE=/gocache GOPROXY=${GOPROXY} GOFLAGS=-buildvcs=false
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/gomodcache go mod download
COPY cmd ./cmd
COPY pkg ./pkg
COPY injector ./injector
COPY sidecar ./sidecar
COPY examples ./examples
RUN --mount=type=cache,target=/gomodcache --mount=type=cache,target=/gocache \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X github.com/ramvault/ramvault/pkg/version.Version=${VERSION}" \
      -o /out/ ./cmd/ramvault ./cmd/ramvault-agent ./examples/app

# What every image has: the CA bundle, the OCI labels, a non-root user.
FROM scratch AS base
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.source=https://github.com/ramvault/ramvault \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.revision=${REVISION}
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 65532:65532

FROM base AS agent
# Execute-only (root-owned, mode 0111): the kernel makes a process whose
# binary its user cannot read non-dumpable from exec on, so an app of the
# same UID that kills the agent cannot open /proc/<new agent>/root, /mem or
# /environ before the agent's own PR_SET_DUMPABLE 0 (a race it used to win).
COPY --from=build --chmod=0111 /out/ramvault-agent /ramvault-agent
ENTRYPOINT ["/ramvault-agent"]

FROM base AS ramvault
COPY --from=build /out/ramvault /ramvault
ENTRYPOINT ["/ramvault"]

# The example app (examples/app) as /example-app: the name the agent signals
# (ramvault.io/signal-process: example-app).
FROM base AS example-app
COPY --from=build /out/app /example-app
ENTRYPOINT ["/example-app"]
