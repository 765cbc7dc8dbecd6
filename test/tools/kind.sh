#!/usr/bin/env bash
# The kind path (needs Docker, kind and kubectl; the local stack needs none):
#   test/tools/kind.sh up      create the kind cluster "ramvault" (idempotent)
#   test/tools/kind.sh load    build the Dockerfile's images (test/tools/image.sh) and load them into the nodes
#   test/tools/kind.sh deploy  the injector (manifests/overlays/kind), the dev Vault and PostgreSQL
#                              (examples/kind), setup-vault.sh, then the example app
#   test/tools/kind.sh e2e [go test flags…]   go test ./test/e2e/ against the cluster
#   test/tools/kind.sh down    delete the cluster
# Environment: KIND_CLUSTER (ramvault), KIND_VAULT_PORT (18200)
# and KIND_PG_PORT (15433) for the e2e port-forwards.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cluster=${KIND_CLUSTER:-ramvault}
# image.sh tags VERSION and dev: the kind overlay runs dev, examples/ VERSION.
tags="$(cat VERSION) dev"
vault_port=${KIND_VAULT_PORT:-18200}
pg_port=${KIND_PG_PORT:-15433}
images="ramvault-agent ramvault ramvault-example-app"
kubeconfig=$root/bin/kind/$cluster.kubeconfig

say() { echo "kind: $*"; }
die() { echo "kind: $*" >&2; exit 1; }
need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || die "$c not found; the kind path needs docker, kind and kubectl in PATH (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
  done
  case " $* " in *" docker "*)
    docker info >/dev/null 2>&1 || die "docker is installed but no Docker engine answers (docker info fails): start Docker, or use the local stack (make demo)" ;;
  esac
}
exists() { case $'\n'"$(kind get clusters 2>/dev/null)"$'\n' in *$'\n'"$cluster"$'\n'*) return 0 ;; esac; return 1; }
# use_cluster writes the cluster's kubeconfig under bin/kind/ and points every
# kubectl of this script (and of setup-vault.sh) at it.
use_cluster() {
  exists || die "no kind cluster $cluster: run test/tools/kind.sh up"
  mkdir -p "$(dirname "$kubeconfig")"
  kind get kubeconfig --name "$cluster" >"$kubeconfig.tmp"
  chmod 600 "$kubeconfig.tmp" && mv "$kubeconfig.tmp" "$kubeconfig"
  export KUBECONFIG=$kubeconfig
}
secret() { kubectl -n vault get secret "$1" -o "jsonpath={.data.$2}" | base64 -d; }

up() {
  need docker kind kubectl
  if exists; then
    say "cluster $cluster exists"
  else
    say "creating cluster $cluster"
    kind create cluster --name "$cluster" --wait 120s
  fi
  use_cluster
  say "kubeconfig: $kubeconfig"
}

load() {
  need docker kind
  say "building images (tags $tags) from the Dockerfile"
  test/tools/image.sh
  exists || die "no kind cluster $cluster: run test/tools/kind.sh up"
  local i tag
  for i in $images; do
    for tag in $tags; do
      say "loading localhost/$i:$tag into $cluster"
      kind load docker-image --name "$cluster" "localhost/$i:$tag"
    done
  done
}

deploy() {
  need kind kubectl
  use_cluster
  say "installing the injector (manifests/overlays/kind)"
  kubectl apply -k manifests/overlays/kind
  say "dev Vault and PostgreSQL in namespace vault (DEV ONLY)"
  kubectl apply -f examples/kind/vault-dev.yaml
  kubectl apply -f examples/kind/postgres-dev.yaml
  say "waiting for the rollouts"
  kubectl -n vault rollout status deploy/vault --timeout=180s
  kubectl -n vault rollout status deploy/postgres --timeout=180s
  kubectl -n ramvault-system rollout status deploy/ramvault-injector --timeout=180s
  say "waiting for the injector's CA in the webhook configuration"
  local i
  for i in $(seq 60); do
    [ -n "$(kubectl get mutatingwebhookconfiguration ramvault-injector -o 'jsonpath={.webhooks[0].clientConfig.caBundle}')" ] && break
    [ "$i" = 60 ] && die "no caBundle in mutatingwebhookconfiguration ramvault-injector after 60s: kubectl -n ramvault-system logs deploy/ramvault-injector"
    sleep 1
  done
  say "configuring Vault (examples/kind/setup-vault.sh)"
  examples/kind/setup-vault.sh
  say "the example app (examples/app/deployment.yaml)"
  kubectl apply -f examples/app/deployment.yaml
  kubectl -n ramvault-example rollout status deploy/example-app --timeout=180s
  say "done: kubectl --kubeconfig $kubeconfig -n ramvault-example port-forward deploy/example-app 8080, then curl -s localhost:8080/status"
}

# The port-forwards e2e started; stopped when it ends, however it ends.
pids=()
stop_forwards() {
  local p
  [ ${#pids[@]} -gt 0 ] || return 0
  say "stopping the port-forwards"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
}

# wait_port waits until 127.0.0.1:$1 accepts connections; $2 names it.
wait_port() {
  local i
  for i in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  die "port-forward to $2 on 127.0.0.1:$1 did not come up (see $root/bin/kind/port-forward-$2.log)"
}

e2e() {
  need kind kubectl go
  use_cluster
  local token pgpass
  token=$(secret vault-dev-root-token token) || die "no Secret vault/vault-dev-root-token: run test/tools/kind.sh deploy"
  pgpass=$(secret postgres-dev-superuser password) || die "no Secret vault/postgres-dev-superuser: run test/tools/kind.sh deploy"
  trap stop_forwards EXIT
  say "port-forwards: Vault on 127.0.0.1:$vault_port, PostgreSQL on 127.0.0.1:$pg_port"
  kubectl -n vault port-forward svc/vault "$vault_port:8200" >"$root/bin/kind/port-forward-vault.log" 2>&1 &
  pids+=($!)
  kubectl -n vault port-forward svc/postgres "$pg_port:5432" >"$root/bin/kind/port-forward-postgres.log" 2>&1 &
  pids+=($!)
  wait_port "$vault_port" vault
  wait_port "$pg_port" postgres
  say "go test ./test/e2e/ -count=1 $*"
  local status=0
  RAMVAULT_KUBECONFIG=$kubeconfig \
    VAULT_ADDR=http://127.0.0.1:$vault_port \
    VAULT_TOKEN=$token \
    RAMVAULT_POD_VAULT_ADDR=http://vault.vault.svc:8200 \
    RAMVAULT_POD_PGHOST=postgres.vault.svc \
    RAMVAULT_POD_PGPORT=5432 \
    PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres \
    PGPASSWORD=$pgpass \
    go test ./test/e2e/ -count=1 "$@" || status=$?
  stop_forwards
  return $status
}

down() {
  need kind
  if exists; then
    say "deleting cluster $cluster"
    kind delete cluster --name "$cluster"
  else
    say "no cluster $cluster"
  fi
  rm -f "$kubeconfig"
}

cmd=${1:-}
case $cmd in
up | load | deploy | down) "$cmd" ;;
e2e) shift; e2e "$@" ;;
*) die "usage: $0 up|load|deploy|e2e [go test flags…]|down" ;;
esac
