#!/usr/bin/env bash
# Configures the DEV-ONLY Vault of vault-dev.yaml for the example app
# (examples/app/deployment.yaml), the way the local stack wires its own Vault
# (test/stack/wire.go), through `kubectl exec` into the vault Pod:
#   - Kubernetes auth at auth/kubernetes with the in-cluster config (Vault's
#     ServiceAccount reviews the agents' tokens);
#   - policy and role ramvault-example for ServiceAccount example-app in
#     namespace ramvault-example, audience vault;
#   - the KV v2 secret secret/ramvault-example/config;
#   - the database engine at database/ on postgres.vault.svc (postgres-dev.yaml)
#     and its role ramvault-example (TTL 20s, max 60s: rotations are quick to see).
# Idempotent. Needs kubectl pointed at the cluster (KUBECTL overrides the command).
set -euo pipefail
kubectl=${KUBECTL:-kubectl}
ns=vault
app_ns=${EXAMPLE_NAMESPACE:-ramvault-example}
app_sa=${EXAMPLE_SERVICE_ACCOUNT:-example-app}
role=ramvault-example

command -v "$kubectl" >/dev/null || { echo "setup-vault: $kubectl not found" >&2; exit 1; }
say() { echo "setup-vault: $*"; }
secret() { "$kubectl" -n "$ns" get secret "$1" -o "jsonpath={.data.$2}" | base64 -d; }
token=$(secret vault-dev-root-token token)
pgpass=$(secret postgres-dev-superuser password)
# vault ARGS… runs the Vault CLI in the vault Pod (stdin passed through).
vault() { "$kubectl" -n "$ns" exec -i deploy/vault -- env VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN="$token" vault "$@"; }

say "waiting for Vault"
"$kubectl" -n "$ns" rollout status deploy/vault --timeout=120s >/dev/null
for i in $(seq 60); do vault status >/dev/null 2>&1 && break; sleep 1; done
vault status >/dev/null

say "Kubernetes auth at auth/kubernetes (in-cluster config)"
case $(vault auth list -format=json) in *'"kubernetes/"'*) ;; *) vault auth enable kubernetes >/dev/null ;; esac
vault write auth/kubernetes/config kubernetes_host=https://kubernetes.default.svc:443 >/dev/null

say "policy and role $role for $app_ns/$app_sa (audience vault)"
vault policy write "$role" - >/dev/null <<POLICY
path "secret/data/ramvault-example/*" { capabilities = ["read"] }
path "database/creds/$role" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }
POLICY
vault write "auth/kubernetes/role/$role" bound_service_account_names="$app_sa" \
  bound_service_account_namespaces="$app_ns" audience=vault token_policies="$role" token_ttl=1h >/dev/null

say "KV v2 secret secret/ramvault-example/config"
vault kv put secret/ramvault-example/config api_key="example-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" greeting=hello >/dev/null

say "database engine at database/ on postgres.vault.svc:5432, role $role"
case $(vault secrets list -format=json) in *'"database/"'*) ;; *) vault secrets enable database >/dev/null ;; esac
db_config() {
  vault write database/config/postgres plugin_name=postgresql-database-plugin \
    connection_url='postgresql://{{username}}:{{password}}@postgres.vault.svc:5432/postgres?sslmode=disable' \
    username=postgres password="$pgpass" allowed_roles='*' >/dev/null
}
ok=
for i in $(seq 30); do db_config 2>/dev/null && { ok=1; break; }; sleep 2; done # PostgreSQL may still be starting
[ -n "$ok" ] || db_config || { echo "setup-vault: Vault cannot use postgres.vault.svc:5432 (is examples/kind/postgres-dev.yaml applied and ready?)" >&2; exit 1; }
vault write "database/roles/$role" db_name=postgres \
  creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';" \
  default_ttl=20s max_ttl=60s >/dev/null
say "done"
