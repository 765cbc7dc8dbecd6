package spec

import (
	"regexp"
	"strings"
	"testing"
)

// The name checks replaced these regexps (compiling them cost the agent
// ~2.5 ms at every start); they must accept exactly the same strings.
var nameChecks = []struct {
	name  string
	re    *regexp.Regexp
	check func(string) bool
}{
	{"role", regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`), isRole},
	{"secret name", regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`), isSecretName},
	{"process name", regexp.MustCompile(`^[^/\x00]{1,15}$`), isProcName},
	{"mount path", regexp.MustCompile(`^/[A-Za-z0-9._/-]*$`), isMountPath},
	{"vault path", regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.+@=:-]+)*$`), isVaultPath},
}

var nameSamples = []string{
	"", "a", "A", "0", "-", ".", "_", "/", "//", "a/", "/a", "a//b", "a/b", "a/b/", "a/b+c@d=e:f", "a+b/c", "a:b",
	"db", "db-1", "db.1", "db_1", "-db", "db-", "Db", "dé", "app/config", "secret/data/app", "database/creds/app",
	"/mnt/secrets", "/mnt/se crets", "/", "/a/../b", "nginx", "my/proc", "a\x00b", "\xff", "\xff\xfe",
	"123456789012345", "1234567890123456", "ééééééééééééééé", "éééééééééééééééé",
	strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 128), strings.Repeat("a", 129),
	"a\nb", "a\n", "pki/issue/web", "kv/x y", "auth/kubernetes", "a/b=c",
}

func TestNameChecksAcceptWhatTheirRegexpsAccepted(t *testing.T) {
	for _, c := range nameChecks {
		for _, s := range nameSamples {
			if got, want := c.check(s), c.re.MatchString(s); got != want {
				t.Errorf("%s %q: accepted %v, the regexp %v", c.name, s, got, want)
			}
		}
	}
}

func FuzzNameChecks(f *testing.F) {
	for _, s := range nameSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range nameChecks {
			if got, want := c.check(s), c.re.MatchString(s); got != want {
				t.Errorf("%s %q: accepted %v, the regexp %v", c.name, s, got, want)
			}
		}
	})
}
