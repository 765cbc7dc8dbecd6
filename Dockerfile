# syntax=docker/dockerfile:1
# Multi-stage build of the two ramvault binaries and the example app; one final
# target each:
#   docker build --target agent       -t ramvault-agent .
#   docker build --target ramvault    -t ramvault .
#   docker build --target example-app -t ramvault-example-app .   (examples/app)
# Without a registry (the local stack), `make image` builds with buildah and a
# builder assembled from the machine's Go toolchain: --build-arg BUILDER=localhost/go-builder:1.26
ARG BUILDER=golang:1.26
FROM ${BUILDER} AS build
ARG VERSION=dev
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
    go build -trimpath -ldflags "-s -w -X github.com/ramvault/ramvault/pkg/version.Version=${VERSION}" \
      -o /out/ ./cmd/ramvault ./cmd/ramvault-agent ./examples/app

FROM scratch AS agent
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Execute-only (root-owned, mode 0111): the kernel makes a process whose
# binary its user cannot read non-dumpable from exec on, so an app of the
# same UID that kills the agent cannot open /proc/<new agent>/root, /mem or
# /environ before the agent's own PR_SET_DUMPABLE 0 (a race it used to win).
COPY --from=build --chmod=0111 /out/ramvault-agent /ramvault-agent
USER 65532:65532
ENTRYPOINT ["/ramvault-agent"]

FROM scratch AS ramvault
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ramvault /ramvault
USER 65532:65532
ENTRYPOINT ["/ramvault"]

# The example app (examples/app) as /example-app: the name the agent signals
# (ramvault.io/signal-process: example-app).
FROM scratch AS example-app
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/app /example-app
USER 65532:65532
ENTRYPOINT ["/example-app"]
