package stack

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	vault "github.com/hashicorp/vault/api"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var metav1Get = metav1.GetOptions{}

// wireVault connects Vault to the cluster and to PostgreSQL: Kubernetes auth
// at the default mount `kubernetes` (a reviewer ServiceAccount bound to
// system:auth-delegator reviews Pod tokens), and the database secrets engine
// at `database/` with a connection named `postgres`. KV v2 at `secret/` is the
// dev server's own.
func (s *Stack) wireVault(ctx context.Context) error {
	cs, err := s.client()
	if err != nil {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: ReviewerSA, Namespace: "kube-system"}}
	if _, err := cs.CoreV1().ServiceAccounts("kube-system").Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ramvault-dev-" + ReviewerSA},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ReviewerSA, Namespace: "kube-system"}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	days := int64(30 * 24 * 3600)
	tr, err := cs.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, ReviewerSA,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &days}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("reviewer token: %w", err)
	}
	ca, err := os.ReadFile(s.p.pki("ca.crt"))
	if err != nil {
		return err
	}

	vc, err := s.env.VaultClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := vc.Sys().EnableAuthWithOptionsWithContext(ctx, "kubernetes", &vault.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		return fmt.Errorf("enable kubernetes auth: %w", err)
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/kubernetes/config", map[string]any{
		"kubernetes_host":      fmt.Sprintf("https://%s:%d", Gateway, APIServerPort),
		"kubernetes_ca_cert":   string(ca),
		"token_reviewer_jwt":   tr.Status.Token,
		"disable_local_ca_jwt": true,
	}); err != nil {
		return fmt.Errorf("configure kubernetes auth: %w", err)
	}
	if err := vc.Sys().MountWithContext(ctx, DatabaseMount, &vault.MountInput{Type: "database"}); err != nil {
		return fmt.Errorf("enable database engine: %w", err)
	}
	if _, err := vc.Logical().WriteWithContext(ctx, DatabaseMount+"/config/"+DatabaseConfig, map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/postgres?sslmode=disable", PostgresPort),
		"username":       s.env.PGUser,
		"password":       s.env.PGPassword,
		"allowed_roles":  "*",
	}); err != nil {
		return fmt.Errorf("configure database connection %q: %w", DatabaseConfig, err)
	}
	return nil
}

// VaultClient returns a Vault API client holding the root token.
func (e Env) VaultClient() (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = e.VaultAddr
	cfg.Timeout = 15 * time.Second
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(e.VaultToken)
	return c, nil
}

func certPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no certificates in %s", file)
	}
	return pool, nil
}

// AppRole writes a Vault policy and a Kubernetes-auth role of the same name
// for service account "app" in namespace, audience vault (more role fields in
// extra, e.g. token_max_ttl). The returned function deletes both.
func (e Env) AppRole(ctx context.Context, name, namespace, policy string, extra map[string]any) (func(), error) {
	vc, err := e.VaultClient()
	if err != nil {
		return nil, err
	}
	if err := vc.Sys().PutPolicyWithContext(ctx, name, policy); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	role := map[string]any{"bound_service_account_names": "app", "bound_service_account_namespaces": namespace,
		"audience": "vault", "token_policies": name, "token_ttl": "10m"}
	for k, v := range extra {
		role[k] = v
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+name, role); err != nil {
		return nil, fmt.Errorf("role %s: %w", name, err)
	}
	return func() {
		_, _ = vc.Logical().Delete("auth/kubernetes/role/" + name)
		_ = vc.Sys().DeletePolicy(name)
	}, nil
}

// DBRole writes a database role on the stack's PostgreSQL connection that
// creates a login role per lease, and returns its creds path. The returned
// function deletes the role.
func (e Env) DBRole(ctx context.Context, name, ttl, maxTTL string) (string, func(), error) {
	vc, err := e.VaultClient()
	if err != nil {
		return "", nil, err
	}
	if _, err := vc.Logical().WriteWithContext(ctx, DatabaseMount+"/roles/"+name, map[string]any{
		"db_name":             DatabaseConfig,
		"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`},
		"default_ttl":         ttl, "max_ttl": maxTTL,
	}); err != nil {
		return "", nil, fmt.Errorf("database role %s: %w", name, err)
	}
	return DatabaseMount + "/creds/" + name, func() { _, _ = vc.Logical().Delete(DatabaseMount + "/roles/" + name) }, nil
}

// TokenAccessors lists the accessors of the Vault tokens issued by
// Kubernetes auth to service accounts of namespace ns.
func (e Env) TokenAccessors(ctx context.Context, ns string) ([]string, error) {
	vc, err := e.VaultClient()
	if err != nil {
		return nil, err
	}
	s, err := vc.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		return nil, err
	}
	var out []string
	keys, _ := s.Data["keys"].([]any)
	for _, k := range keys {
		a := fmt.Sprint(k)
		info, err := vc.Logical().WriteWithContext(ctx, "auth/token/lookup-accessor", map[string]any{"accessor": a})
		if err != nil || info == nil {
			continue // revoked or expired meanwhile
		}
		if meta, ok := info.Data["meta"].(map[string]any); ok && meta["service_account_namespace"] == ns {
			out = append(out, a)
		}
	}
	return out, nil
}
