package stack

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Env is how clients reach a running stack. It is written as a
// shell-sourceable file (`make dev-up` copies it to .dev/env).
type Env struct {
	Kubeconfig   string // admin (system:masters) kubeconfig
	VaultAddr    string // Vault as seen from this host
	VaultToken   string // the dev server's root token
	PGHost       string // PostgreSQL as seen from this host
	PGPort       string
	PGUser       string // superuser
	PGPassword   string
	PodVaultAddr string // Vault as seen from inside a Pod
	PodPGHost    string // PostgreSQL as seen from inside a Pod
	PodPGPort    string
	CACert       string // the cluster CA (PEM file)
	StateDir     string
}

// vars lists the file's variables in a fixed order: name and pointer.
func (e *Env) vars() []struct {
	name string
	val  *string
} {
	return []struct {
		name string
		val  *string
	}{
		{"KUBECONFIG", &e.Kubeconfig},
		{"VAULT_ADDR", &e.VaultAddr},
		{"VAULT_TOKEN", &e.VaultToken},
		{"PGHOST", &e.PGHost},
		{"PGPORT", &e.PGPort},
		{"PGUSER", &e.PGUser},
		{"PGPASSWORD", &e.PGPassword},
		{"RAMVAULT_POD_VAULT_ADDR", &e.PodVaultAddr},
		{"RAMVAULT_POD_PGHOST", &e.PodPGHost},
		{"RAMVAULT_POD_PGPORT", &e.PodPGPort},
		{"RAMVAULT_CLUSTER_CA", &e.CACert},
		{"RAMVAULT_STACK_DIR", &e.StateDir},
	}
}

// Shell renders the env file: `export NAME='value'` lines.
func (e Env) Shell() string {
	var b strings.Builder
	b.WriteString("# ramvault local stack; source this file. Holds the Vault dev root token: do not share.\n")
	for _, v := range e.vars() {
		fmt.Fprintf(&b, "export %s='%s'\n", v.name, strings.ReplaceAll(*v.val, "'", `'\''`))
	}
	return b.String()
}

// WriteFile writes the env file with mode 0600 (it holds the root token).
func (e Env) WriteFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(e.Shell()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadEnv parses a file written by WriteFile.
func ReadEnv(path string) (Env, error) {
	var e Env
	f, err := os.Open(path)
	if err != nil {
		return e, err
	}
	defer f.Close()
	byName := map[string]*string{}
	for _, v := range e.vars() {
		byName[v.name] = v.val
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if p := byName[name]; ok && p != nil {
			*p = strings.ReplaceAll(strings.Trim(val, "'"), `'\''`, "'")
		}
	}
	if err := sc.Err(); err != nil {
		return e, err
	}
	if e.Kubeconfig == "" || e.VaultAddr == "" || e.VaultToken == "" {
		return e, fmt.Errorf("%s is incomplete (no KUBECONFIG, VAULT_ADDR or VAULT_TOKEN)", path)
	}
	return e, nil
}
