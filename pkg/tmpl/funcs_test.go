package tmpl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
	"software.sslmate.com/src/go-pkcs12"
)

// The expected outputs below are derived from consul-template v0.41.1's
// template/funcs.go (the version Vault 1.21.0's go.mod pins): each of its
// functions is a thin wrapper of the standard library or gopkg.in/yaml.v2,
// so the expectation is what that wrapper returns.
func TestFunctionsMatchConsulTemplate(t *testing.T) {
	data := map[string]any{
		"s":     "hi?>",
		"html":  "<a&b>",
		"list":  []any{"a", "b", "c"},
		"csv":   " a,b,,c ",
		"num":   json.Number("5432"),
		"multi": "l1\nl2",
		"nested": map[string]any{
			"b": "x", "a": "1", "c": true, "list": []any{"p", "q"}, "m": map[string]any{"k": "v"}, "multi": "l1\nl2", "n": json.Number("7"), "f": 1.5,
		},
		"slashed": map[string]any{"a/b": "1", "a/c": "2", "d": "3"},
	}
	dot := &Secret{Data: data}
	for _, c := range []struct{ src, want string }{
		{`{{ base64Encode .Data.s }}`, "aGk/Pg=="},
		{`{{ base64URLEncode .Data.s }}`, "aGk_Pg=="},
		{`{{ "aGk/Pg==" | base64Decode }}`, "hi?>"},
		{`{{ "aGk_Pg==" | base64URLDecode }}`, "hi?>"},
		{`{{ toJSON .Data.html }}`, `"\u003ca\u0026b\u003e"`},
		{`{{ toUnescapedJSON .Data.html }}`, `"<a&b>"`},
		{`{{ toJSON .Data.nested }}`, `{"a":"1","b":"x","c":true,"f":1.5,"list":["p","q"],"m":{"k":"v"},"multi":"l1\nl2","n":7}`},
		{`{{ toJSONPretty .Data.nested.m }}`, "{\n  \"k\": \"v\"\n}"},
		{`{{ toJSONPretty .Data.list }}`, "[\n  \"a\",\n  \"b\",\n  \"c\"\n]"},
		{`{{ toUnescapedJSONPretty .Data.html }}`, `"<a&b>"`},
		{`{{ toYAML .Data.nested }}`, "a: \"1\"\nb: x\nc: true\nf: 1.5\nlist:\n- p\n- q\nm:\n  k: v\nmulti: |-\n  l1\n  l2\n\"n\": 7"}, // yaml.v2 quotes the key n (a YAML 1.1 bool)
		{`{{ toYAML .Data.list }}`, "- a\n- b\n- c"},
		{`{{ toYAML "yes" }}`, `"yes"`},
		{`{{ (parseJSON "{\"a\":[1,2]}").a }}`, "[1 2]"},
		{`{{ parseJSON "" }}`, "map[]"},
		{`{{ (parseYAML "a: [1, 2]").a }}`, "[1 2]"},
		{`{{ parseBool "true" }} {{ parseBool "" }} {{ parseFloat "1.5" }} {{ parseInt "-3" }} {{ parseUint "3" }}`, "true false 1.5 -3 3"},
		{`{{ split "," .Data.csv }}`, "[a b  c]"},
		{`{{ split "," "  " }}`, "[]"},
		{`{{ splitToMap "," "=" "a=1,b,c=2=3" }}`, "map[a:1 c:2=3]"},
		{`{{ split "," "a,b" | join ";" }}`, "a;b"},
		{`{{ .Data.list | contains "b" }} {{ .Data.list | contains "z" }} {{ "abc" | contains "bc" }}`, "true false true"},
		{`{{ in .Data.list "c" }}`, "true"},
		{`{{ containsAll .Data.list .Data.list }} {{ containsAny (parseJSON "[\"z\",\"a\"]") .Data.list }} {{ containsNone (parseJSON "[\"z\"]") .Data.list }} {{ containsNotAll (parseJSON "[\"a\",\"z\"]") .Data.list }}`, "true true true true"},
		{`{{ replaceAll "o" "0" "foo" }}`, "f00"},
		{`{{ regexReplaceAll "(o+)" "<$1>" "foo bar boo" }}`, "f<oo> bar b<oo>"},
		{`{{ regexMatch "^f.o$" "foo" }}`, "true"},
		{`{{ trim "x" "xxhixx" }}|{{ trimPrefix "a" "aab" }}|{{ trimSuffix "b" "abb" }}|{{ trimSpace " a " }}`, "hi|ab|ab|a"},
		{`{{ toLower "AbC" }} {{ toUpper "aBc" }} {{ toTitle "hello world-foo_bar don't ß" }}`, "abc ABC Hello World-Foo_bar Don't Ss"},
		{`{{ indent 2 "a\n\nb" }}`, "  a\n\n  b"},
		{`{{ sha256Hex "x" }}`, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"},
		{`{{ md5sum "x" }}`, "9dd4e461268c8034f5c8564e155c67a6"},
		{`{{ hmacSHA256Hex "msg" "key" }}`, "2d93cbc1be167bcb1637a4a23cbff01a7878f0c50ee833954ea5221bb1b8c628"},
		{`{{ timestamp }} {{ timestamp "unix" }} {{ timestamp "2006" }}`, "2025-01-02T03:04:05Z 1735787045 2025"},
		{`{{ explodeMap .Data.slashed }}`, "map[a:map[b:1 c:2] d:3]"},
		{`{{ range loop 3 }}{{ . }}{{ end }} {{ range loop 2 4 }}{{ . }}{{ end }} {{ range loop "2" }}{{ . }}{{ end }}`, "012 23 01"},
		{`{{ add 1 2 }} {{ subtract 1 3 }} {{ multiply 2 3 }} {{ divide 2 7 }} {{ modulo 2 7 }}`, "3 2 6 3 1"},
		{`{{ divide 2.0 7 }} {{ add 1 (parseFloat "0.5") }} {{ add (parseUint "1") (parseUint "2") }}`, "3.5 1.5 3"},
		{`{{ printf "%05d|%-4s|%q" 42 "ab" "c" }}`, `00042|ab  |"c"`},
		{`{{ index .Data.list 1 }} {{ len .Data.list }} {{ .Data.num }}`, "b 3 5432"},
	} {
		t.Run(c.src, func(t *testing.T) {
			got := render(t, c.src, Input{Dot: dot, Now: func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }})
			if got != c.want {
				t.Fatalf("\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestRamvaultFunctionsStillWork(t *testing.T) {
	dot := &Secret{Data: map[string]any{
		"s": "hi", "e": "", "certificate": "C\n", "private_key": "K", "ca_chain": []any{"A", "B\n"}, "issuing_ca": "A",
	}}
	for _, c := range []struct{ src, want string }{
		{`{{ base64 .Data.s }}|{{ base64dec "aGk=" }}|{{ json .Data.s }}`, `aGk=|hi|"hi"`},
		{`{{ lower "A" }}{{ upper "b" }}|{{ trim "  x " }}`, "aB|x"},
		{`{{ .Data.e | default "d" }}|{{ .Data.s | default "d" }}|{{ .Data.none | default "d" }}`, "d|hi|d"},
		{`{{ pemCert .Data }}{{ pemKey .Data }}{{ pemChain .Data }}`, "C\nK\nC\nA\nB\n"},
	} {
		if got := render(t, c.src, Input{Dot: dot}); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.src, got, c.want)
		}
	}
}

func TestRegexReplaceAllMatchesTheStandardLibrary(t *testing.T) {
	r := &run{lim: Limits{}.withDefaults()}
	for _, c := range [][3]string{
		{"", "-", "abc"}, {"a*", "x", "baaac"}, {"(a)(b)?", "[$2$1]", "abab a"}, {"^", ">", "x\ny"}, {"(?m)^", ">", "x\ny"},
		{"b*", "${0}${0}", "abbbc"}, {"x", "$missing", "axb"}, {"é", "e", "café é"},
	} {
		want := regexp.MustCompile(c[0]).ReplaceAllString(c[2], c[1])
		got, err := r.regexReplaceAll(c[0], c[1], c[2])
		if err != nil || got != want {
			t.Errorf("regexReplaceAll%q = %q, %v; regexp gives %q", c, got, err, want)
		}
	}
}

// toTitle is written without x/text (binary size); this compares it with
// the x/text call consul-template makes.
func TestTitleMatchesXText(t *testing.T) {
	ref := cases.Title(language.Und, cases.NoLower)
	inputs := []string{
		"hello world", "HELLO wORLD", "don't stop", "foo_bar-baz", "a.b.c", "a..b", "x:y", "1st place", "a1b2 c3",
		"élan vital", "ßtraße", "ǆemal", "ﬁne ﬂow", "ŉ", "straße weg", "o'neil mc-donald", "tab\tsep\nline",
		"“quoted” words", "(paren) [bracket] {brace}", "e-mail@host.example", "über-cool", "çava", "日本語 text", "ωμέγα",
		"i̇stanbul", "a\u0301b", "a\u200db", "foo\u00adbar", "--x", "x--y", "x''y", "x. y", "...x", "'quoted'",
	}
	// Exact for every rune up to U+024F (ASCII, Latin-1, Latin Extended)
	// between letters and at the start of a word.
	for r := rune(0x20); r < 0x250; r++ {
		inputs = append(inputs, "a"+string(r)+"b "+string(r)+"c")
	}
	for _, s := range inputs {
		if got, want := title(s), ref.String(s); got != want {
			t.Errorf("toTitle(%q) = %q, x/text gives %q", s, got, want)
		}
	}
	// Beyond, Unicode's Word_Break table (not in the standard library)
	// decides some symbols and South-East Asian marks; count, don't fail.
	bad, n := 0, 0
	for r := rune(0x250); r < 0x2500; r++ {
		s := "a" + string(r) + "b " + string(r) + "c"
		n++
		if title(s) != ref.String(s) {
			bad++
		}
	}
	t.Logf("toTitle differs from x/text on %d of %d runes in U+0250–U+24FF", bad, n)
}

// testPKI issues a CA and a leaf the way Vault's pki/issue answers.
func testPKI(t testing.TB) (resp map[string]any, leafPEM, keyPEM, caPEM string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "web"}, DNSNames: []string{"web"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kDER, _ := x509.MarshalECPrivateKey(key)
	leafPEM = strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})))
	keyPEM = strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kDER})))
	caPEM = strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
	resp = map[string]any{
		"certificate": leafPEM, "private_key": keyPEM, "private_key_type": "ec", "issuing_ca": caPEM,
		"ca_chain": []any{caPEM}, "serial_number": "00:02", "expiration": json.Number("1735787045"),
	}
	return resp, leafPEM, keyPEM, caPEM
}

func TestPKICert(t *testing.T) {
	resp, leaf, key, ca := testPKI(t)
	src := `{{ with pkiCert "pki/issue/web" "common_name=web" }}{{ .Cert }}{{ .Key }}{{ .CA }}{{ len .CAChain }}{{ .Data.Cert | len }}{{ end }}`
	tp := mustParse(t, src)
	d := tp.Dependencies()[0]
	if !d.Write || d.Kind != KindPKICert {
		t.Fatalf("pkiCert dependency %+v", d)
	}
	out, err := tp.Execute(Input{Lookup: Values{Secrets: map[string]*Secret{d.Key(): {Data: resp}}}})
	if err != nil {
		t.Fatal(err)
	}
	// consul-template re-encodes each block with pem.EncodeToMemory: a
	// trailing newline each.
	want := leaf + "\n" + key + "\n" + ca + "\n" + "1" + itoa(int64(len(leaf)+1))
	if string(out) != want {
		t.Fatalf("\n got %q\nwant %q", out, want)
	}
}

func TestPKCS12(t *testing.T) {
	resp, leaf, key, ca := testPKI(t)
	_ = resp
	src := `{{ pkcs12 .Data.cert .Data.key .Data.password .Data.chain }}`
	dot := &Secret{Data: map[string]any{"cert": leaf, "key": key, "password": "s3cret", "chain": []any{ca}}}
	tp := mustParse(t, src)
	out1, err := tp.Execute(Input{Dot: dot})
	if err != nil {
		t.Fatal(err)
	}
	out2, _ := tp.Execute(Input{Dot: dot})
	if string(out1) != string(out2) {
		t.Fatal("the same inputs must give the same keystore (no rewrite, no reload)")
	}
	k, c, chain, err := pkcs12.DecodeChain(out1, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "web" || len(chain) != 1 || chain[0].Subject.CommonName != "ca" {
		t.Fatalf("decoded %s with chain %v", c.Subject, chain)
	}
	if !keyMatches(k, c) {
		t.Fatal("decoded key does not match the certificate")
	}
	if ossl, err := exec.LookPath("openssl"); err == nil {
		p := filepath.Join(t.TempDir(), "ks.p12")
		if err := os.WriteFile(p, out1, 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command(ossl, "pkcs12", "-in", p, "-passin", "pass:s3cret", "-nokeys", "-info").CombinedOutput(); err != nil || !strings.Contains(string(b), "subject=CN") {
			t.Fatalf("openssl pkcs12 cannot read it: %v\n%s", err, b)
		}
	}
	// A key from another issuance is refused, without printing either.
	_, _, otherKey, _ := testPKI(t)
	dot.Data["key"] = otherKey
	_, err = tp.Execute(Input{Dot: dot})
	if err == nil || !strings.Contains(err.Error(), "KEY is not the private key of the certificate") || strings.Contains(err.Error(), "PRIVATE") {
		t.Fatalf("err = %v", err)
	}
}
