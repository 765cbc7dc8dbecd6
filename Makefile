# ramvault — see README.md. Verbs: build test demo dev-up dev-down tools deps vet.
SHELL := /bin/bash
GO ?= go
# The release: the VERSION file (the images' tag and label, stamped into the binaries).
VERSION ?= $(shell cat VERSION)
LDFLAGS := -s -w -X github.com/ramvault/ramvault/pkg/version.Version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all build deps tools vet test unit fuzz dev-up dev-down dev-status demo bench-agent bench-herd bench-pods image image-size clean bench-webhook bench-scale \
	kind-up kind-load deploy-kind e2e-kind kind-down

all: build

build: ## product binaries into bin/
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/ramvault ./cmd/ramvault-agent ./cmd/kubectl-ramvault

# Each step prints `time: STEP Ns` (test/tools/timed.sh); build.sh also prints one per tool it builds.
T := test/tools/timed.sh

deps: ## Debian packages (only what is missing)
	@$(T) deps test/tools/deps.sh

tools: ## real Kubernetes, etcd, Vault, Helm, vault-k8s, Prometheus (+ promtool) and the pause binary into bin/ (only what is missing or changed)
	@$(T) tools test/tools/build.sh
	@$(T) helm test/tools/build-helm.sh
	@$(T) vault-k8s test/tools/build-vaultk8s.sh
	@$(T) prometheus test/tools/build-prometheus.sh
	@$(T) pause $(GO) build -trimpath -ldflags "-s -w" -o bin/pause ./test/images/pause

# (the tools modules are thin mains that `make tools` compiles; vetting them
# would re-typecheck all of Kubernetes and Vault for nothing)
vet:
	@$(T) vet $(GO) vet ./...

# Every test: unit, integration and end to end on the real stack. The stack is
# started by the first test that needs it and torn down at the end, pass or fail.
test: deps tools vet image
	@status=0; \
	$(T) go-test $(GO) test -count=1 -timeout 45m ./... || status=$$?; \
	$(T) dev-down $(GO) run ./test/cmd/devstack down || status=$$?; \
	exit $$status

# Each fuzz target for FUZZTIME (default 10m), one after the other; what a
# run finds goes into the target's testdata/fuzz corpus (commit it). Not
# part of `make test`: about an hour in all.
FUZZTIME ?= 10m
FUZZ_TARGETS := ./pkg/spec:FuzzParse ./pkg/spec:FuzzNameChecks ./pkg/tmpl:FuzzParse ./pkg/tmpl:FuzzExecuteNeverLeaks \
	./injector:FuzzInject ./injector/admission:FuzzDecodeAdmissionReview ./injector/admission:FuzzDecodeAdmittedPod \
	./injector/vaultk8s:FuzzTranslate
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t#*:}; echo "fuzz: $$name in $$pkg for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

unit: ## tests that need no stack
	$(GO) test -count=1 ./pkg/... ./injector/... ./sidecar/... ./cmd/...

dev-up: deps tools image ## start the local stack in the background, ramvault deployed in it (dev overlay); writes .dev/env
	@$(T) dev-up $(GO) run ./test/cmd/devstack up

dev-down: ## stop the local stack and clean the host
	@$(GO) run ./test/cmd/devstack down

dev-status:
	@$(GO) run ./test/cmd/devstack status

demo: dev-up ## the stack, the agent image, an app Pod getting rotating secrets on tmpfs
	@$(GO) run ./test/cmd/demo

image: ## the Dockerfile's images for linux/amd64+arm64, tagged VERSION and dev: OCI archives and SBOMs in bin/images/ (IMAGES_DIR)
	@$(T) image test/tools/image.sh $(VERSION)

image-size: ## compressed and unpacked size of each image and platform in bin/images, against the goals
	@$(GO) run ./test/cmd/image-size

bench-agent: dev-up ## ramvault-agent vs Vault Agent 1.21.0: time to files, idle RSS
	@$(GO) run ./test/cmd/bench-agent

# 50 agents (real processes, real Kubernetes auth) and Vault refused for 60 s
# by a fault proxy: the peak request rate after its return against the
# steady rate, from Vault's audit log. About 5 minutes; waits for the stack's
# exclusive lock. Flags: make bench-herd HERD_FLAGS='-agents 20 -outage 30s'.
bench-herd: dev-up ## the herd when Vault returns after an outage: peak vs steady request rate
	@$(GO) run ./test/cmd/bench-herd $(HERD_FLAGS)

bench-pods: dev-up ## Pod create→Ready with and without injection, median of 10 each; ramvault's share over an empty container (goal ≤ 50 ms)
	@$(GO) run ./test/cmd/bench-pods

# ramvault vs vault-k8s v1.6.2 + Vault Agent 1.21.0 on the stack's kubelet,
# one side at a time, at N = 10, 25, 50 Pods with 10-minute windows (about an
# hour; it holds the stack's lock exclusively). Not part of `make test`.
# BENCH_SCALE_FLAGS='-n 10 -window 2m -scale 5,10' for a short run.
BENCH_SCALE_FLAGS ?=
bench-scale: dev-up ## ramvault vs vault-k8s + Vault Agent at scale on one kubelet: Ready, memory, CPU, Vault requests, DB roles, admission, per-Pod slope, SVG
	@test/tools/build-vaultk8s.sh
	@$(GO) run ./test/cmd/bench-scale $(BENCH_SCALE_FLAGS)

# kind, for machines with Docker (not this one): the same manifests (kind
# overlay), the same end-to-end suite pointed at the kind cluster.
kind-up: ## a kind cluster named ramvault
	@test/tools/kind.sh up
kind-load: ## build the images with Docker and load them into kind
	@test/tools/kind.sh load
deploy-kind: ## ramvault (kind overlay), a dev Vault and PostgreSQL (examples/kind)
	@test/tools/kind.sh deploy
e2e-kind: ## the end-to-end suite against the kind cluster
	@test/tools/kind.sh e2e
kind-down:
	@test/tools/kind.sh down

clean: dev-down
	rm -rf bin .dev

bench-webhook: ## ramvault webhook vs vault-k8s v1.6.2 vs a decode-only floor: req/s, p50, p99 over HTTPS
	@test/tools/build-vaultk8s.sh
	@$(GO) run ./test/cmd/bench-webhook
