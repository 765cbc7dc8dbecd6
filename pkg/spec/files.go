package spec

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// TokenFile is the file, beside the secrets at the Pod's mount-path, that
// holds the agent's Vault token with inject-token.
const TokenFile = "token"

// MountDirPrefix is the directory of the secrets volume under which the
// files of each mount-path-<name> other than the Pod's mount-path live, one
// subdirectory per mount path (Mounts). The volume's root is the Pod's
// mount-path.
const MountDirPrefix = ".ramvault-mounts"

// Mount is one place where target containers see a directory of the
// secrets volume.
type Mount struct {
	Path    string // in the target containers
	SubPath string // in the secrets volume; "" for its root
}

// Mounts are the mounts of the secrets volume in the target containers:
// the Pod's mount-path (the volume's root) first, then one per other
// mount-path-<name>, sorted by path, at MountDirPrefix/<index>. The injector
// mounts them; the agent writes each file under its mount's SubPath.
func (c *Annotations) Mounts() []Mount {
	out := []Mount{{Path: c.MountPath}}
	var extra []string
	for _, s := range c.Secrets {
		if s.MountPath != "" && s.MountPath != c.MountPath && !contains(extra, s.MountPath) {
			extra = append(extra, s.MountPath)
		}
	}
	sort.Strings(extra)
	for i, p := range extra {
		out = append(out, Mount{Path: p, SubPath: fmt.Sprintf("%s/%d", MountDirPrefix, i)})
	}
	return out
}

// VolumePath is where the agent writes the file of s, relative to the root
// of the secrets volume: its mount's SubPath joined with its File.
func (c *Annotations) VolumePath(s Secret) string {
	file := s.File
	if file == "" {
		file = s.Name
	}
	for _, m := range c.Mounts() {
		if m.Path == s.MountPath || s.MountPath == "" && m.SubPath == "" {
			return path.Join(m.SubPath, file)
		}
	}
	return file
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// finish applies the rules that span annotations: one CA source, and files
// that do not overlap.
func (c *Annotations) finish(annotations map[string]string) ErrorList {
	var errs ErrorList
	if c.VaultCAConfigMap != "" && c.VaultCASecret != "" {
		errs = append(errs, Error{Prefix + "vault-ca-secret", "set either " + Prefix + "vault-ca-configmap or " + Prefix + "vault-ca-secret, not both"})
	}
	if _, set := annotations[Prefix+"vault-ca-key"]; set && c.VaultCAConfigMap == "" && c.VaultCASecret == "" {
		errs = append(errs, Error{Prefix + "vault-ca-key", "names a key of " + Prefix + "vault-ca-configmap or " + Prefix + "vault-ca-secret, and neither is set: set one, or remove this annotation"})
	}
	owner := map[string]string{} // volume path -> annotation that put a file there
	if c.InjectToken {
		owner[TokenFile] = Prefix + "inject-token"
	}
	for _, s := range c.Secrets {
		p := c.VolumePath(s)
		k := Prefix + "secret-" + s.Name
		if _, set := annotations[Prefix+"file-name-"+s.Name]; set {
			k = Prefix + "file-name-" + s.Name
		} else if s.TemplateOnly() {
			k = Prefix + "template-" + s.Name
		}
		for q, other := range owner {
			if q == p || strings.HasPrefix(p, q+"/") || strings.HasPrefix(q, p+"/") {
				errs = append(errs, Error{k, fmt.Sprintf("the file %s/%s would overlap the one of %s: give one of them another file-name", s.MountPath, s.File, other)})
			}
		}
		owner[p] = k
	}
	return errs
}

// cleanFileName checks a file-name: a relative path, without . or ..
// segments, that is not the agent's.
func cleanFileName(v string) (string, error) {
	v = strings.TrimPrefix(v, "/")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%q is not a file name: %s", v, why)
	}
	if v == "" || strings.HasSuffix(v, "/") {
		return bad("a path relative to the mount path, ending with the file's name")
	}
	if len(v) > 255 {
		return bad("at most 255 characters")
	}
	for _, seg := range strings.Split(v, "/") {
		switch {
		case seg == "" || seg == "." || seg == "..":
			return bad("no empty, . or .. segments")
		case !all(seg, isWordChar):
			return bad("letters, digits, '_', '.', '-' and '/' only")
		}
	}
	if strings.HasPrefix(v, ".ramvault") {
		return bad("names starting with .ramvault are the agent's")
	}
	return v, nil
}

// isConfigKey is a ConfigMap or Secret key: [-._a-zA-Z0-9]{1,253}.
func isConfigKey(s string) bool {
	return len(s) >= 1 && len(s) <= 253 && all(s, isWordChar) && s != "." && s != ".."
}

// isHostName is a DNS name (letters, digits, '-', '.'), at most 253.
func isHostName(s string) bool {
	if len(s) < 1 || len(s) > 253 || s[0] == '.' || s[0] == '-' || s[len(s)-1] == '.' || s[len(s)-1] == '-' {
		return false
	}
	return all(s, func(c byte) bool { return isWordChar(c) && c != '_' })
}

// isQuantity is the syntax of a Kubernetes resource quantity: a decimal
// number, then an SI or binary suffix or an exponent. The injector parses
// it again with apimachinery (the agent must not import it).
func isQuantity(s string) bool {
	s = strings.TrimPrefix(s, "+")
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	digits := i
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	switch suf := s[i:]; suf {
	case "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei":
		return true
	default:
		if (suf[0] == 'e' || suf[0] == 'E') && len(suf) > 1 {
			exp := strings.TrimPrefix(strings.TrimPrefix(suf[1:], "-"), "+")
			return exp != "" && all(exp, func(c byte) bool { return '0' <= c && c <= '9' })
		}
	}
	return false
}
