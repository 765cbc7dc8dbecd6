package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is the app's configuration (its flags).
type Config struct {
	SecretsDir string
	DBFile     string // "" for no database
	ConfigFile string // "" for no KV file
	Listen     string
	DB         DBAddr
	TLS        TLSFiles
}

// DBAddr is where PostgreSQL is. These are not secrets; the credentials
// come only from the file.
type DBAddr struct {
	Host, Port, Database, SSLMode string
	Timeout                       time.Duration
}

// Credentials are the contents of the database credentials file.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Fingerprint is the first 12 hex characters of sha256(username+password):
// enough to tell credentials apart, nothing to log in with.
func (c Credentials) Fingerprint() string {
	sum := sha256.Sum256([]byte(c.Username + c.Password))
	return hex.EncodeToString(sum[:])[:12]
}

// Session is an open database session.
type Session interface {
	Close(ctx context.Context) error
}

// Connector logs in to the database with creds. Its errors may quote the
// user name or worse; the app scrubs them before they go anywhere.
type Connector func(ctx context.Context, creds Credentials) (Session, error)

// Reload sources, as counted in the status.
const (
	sourceStart  = "start"
	sourceSignal = "signal"
	sourceHTTP   = "http"
)

// Status is the JSON of GET /status. It holds no secret value.
type Status struct {
	SignalReloads         int64      `json:"signal_reloads"`         // reloads by SIGHUP
	HTTPReloads           int64      `json:"http_reloads"`           // reloads by POST /reload
	DBLoginsOK            int64      `json:"db_logins_ok"`           // successful logins, the first one included
	DBLoginErrors         int64      `json:"db_login_errors"`        // failed logins, unreadable credentials included
	LastDBError           string     `json:"last_db_error"`          // of the latest failed attempt ("" if none); never a value
	DBConnected           bool       `json:"db_connected"`           // the latest attempt logged in and the session is open
	CredentialGeneration  int        `json:"credential_generation"`  // distinct credentials logged in with so far
	CredentialFingerprint string     `json:"credential_fingerprint"` // of the credentials read at the last reload ("" if unreadable)
	ConfigFingerprint     string     `json:"config_fingerprint"`     // sha256 of the KV file, 12 hex ("" if unreadable)
	LastReload            string     `json:"last_reload"`            // start, signal or http
	LastReloadTime        time.Time  `json:"last_reload_time"`       // RFC 3339
	SecretsDir            string     `json:"secrets_dir"`
	SecretsDirFilesystem  string     `json:"secrets_dir_filesystem"` // "tmpfs", "ramfs", "other (0x…)" or "unknown"
	Files                 []FileInfo `json:"files"`                  // read at each GET, sorted by name
	FilesError            string     `json:"files_error,omitempty"`  // the directory could not be listed
	UID                   int        `json:"uid"`                    // the app's own uid and gid
	GID                   int        `json:"gid"`
	TLS                   *TLSStatus `json:"tls,omitempty"` // with -tls-cert: the certificate served
}

// App is the example app. Its state changes only in reload.
type App struct {
	cfg     Config
	connect Connector
	log     *slog.Logger

	reloadMu sync.Mutex // one reload at a time; held while logging in
	session  Session    // guarded by reloadMu

	mu   sync.Mutex // guards st and seen
	st   Status
	seen map[string]bool // fingerprints logged in with

	cert atomic.Pointer[tls.Certificate] // served on cfg.TLS.Listen; replaced at each reload
}

// New returns the app; connect is used only when cfg.DBFile is set.
func New(cfg Config, connect Connector, log *slog.Logger) *App {
	return &App{cfg: cfg, connect: connect, log: log, seen: map[string]bool{},
		st: Status{SecretsDir: cfg.SecretsDir, UID: os.Getuid(), GID: os.Getgid()}}
}

// ListenAndServe listens on cfg.Listen and serves (see Serve).
func (a *App) ListenAndServe(ctx context.Context, hup <-chan os.Signal) error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln, hup)
}

// Serve loads the secrets, then serves HTTP on ln and reloads on each value
// from hup until ctx ends; then it stops the server and closes the database
// session, each under a fresh timeout.
func (a *App) Serve(ctx context.Context, ln net.Listener, hup <-chan os.Signal) error {
	a.Reload(ctx, sourceStart)
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.log.Info("serving", "addr", ln.Addr().String(), "secrets_dir", a.cfg.SecretsDir)
	if a.cfg.TLS.Cert != "" {
		tln, err := net.Listen("tcp", a.cfg.TLS.Listen)
		if err != nil {
			return err
		}
		tsrv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second,
			TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				if c := a.cert.Load(); c != nil {
					return c, nil
				}
				return nil, errors.New("no certificate loaded")
			}}}
		go func() { _ = tsrv.ServeTLS(tln, "", "") }()
		defer tsrv.Close()
		a.log.Info("serving TLS", "addr", tln.Addr().String())
	}

	var err error
loop:
	for {
		select {
		case sig := <-hup:
			a.log.Info("reload requested", "source", sourceSignal, "signal", sig.String())
			a.Reload(ctx, sourceSignal)
		case err = <-served:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	a.reloadMu.Lock()
	a.closeSession(sctx)
	a.reloadMu.Unlock()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	a.log.Info("stopped")
	return err
}

// Handler serves GET /status, GET /healthz and POST /reload.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Status())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		a.log.Info("reload requested", "source", sourceHTTP, "remote", r.RemoteAddr)
		// A client that gives up (the agent waits 5s) does not cut the
		// reload short; the login has its own timeout.
		a.Reload(context.WithoutCancel(r.Context()), sourceHTTP)
		writeJSON(w, a.Status())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Status returns the current status, the files read now.
func (a *App) Status() Status {
	files, err := listFiles(a.cfg.SecretsDir)
	a.mu.Lock()
	st := a.st
	a.mu.Unlock()
	st.Files = files
	st.SecretsDirFilesystem = filesystem(a.cfg.SecretsDir)
	if err != nil {
		st.FilesError = err.Error()
	}
	return st
}

// Reload re-reads the files and logs in to the database with the
// credentials read; the counter of source is raised when it is done, so a
// client that sees the count has seen the reload's result.
func (a *App) Reload(ctx context.Context, source string) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()

	configFP := ""
	if a.cfg.ConfigFile != "" {
		if b, err := os.ReadFile(filepath.Join(a.cfg.SecretsDir, a.cfg.ConfigFile)); err != nil {
			a.log.Warn("config file unreadable", "file", a.cfg.ConfigFile, "err", fileErr(err))
		} else {
			sum := sha256.Sum256(b)
			configFP = hex.EncodeToString(sum[:])[:12]
		}
	}

	if a.cfg.TLS.Cert != "" {
		ts := a.loadTLS()
		a.mu.Lock()
		a.st.TLS = &ts
		a.mu.Unlock()
	}

	credFP, dbErr, ok, fresh := "", "", false, false
	if a.cfg.DBFile != "" {
		creds, err := readCredentials(filepath.Join(a.cfg.SecretsDir, a.cfg.DBFile))
		if err != nil {
			dbErr = err.Error()
			a.closeSession(ctx)
		} else {
			credFP = creds.Fingerprint()
			ok, dbErr = a.login(ctx, creds)
		}
		if ok {
			a.mu.Lock()
			fresh = !a.seen[credFP]
			a.seen[credFP] = true
			a.mu.Unlock()
		}
	}

	a.mu.Lock()
	st := &a.st
	switch source {
	case sourceSignal:
		st.SignalReloads++
	case sourceHTTP:
		st.HTTPReloads++
	}
	if a.cfg.DBFile != "" {
		if ok {
			st.DBLoginsOK++
		} else {
			st.DBLoginErrors++
			st.LastDBError = dbErr
		}
		st.DBConnected = ok
		st.CredentialGeneration = len(a.seen)
	}
	st.CredentialFingerprint, st.ConfigFingerprint = credFP, configFP
	st.LastReload, st.LastReloadTime = source, time.Now().UTC()
	gen := st.CredentialGeneration
	a.mu.Unlock()

	attrs := []any{"source", source, "config_fingerprint", configFP}
	if a.cfg.DBFile != "" {
		attrs = append(attrs, "credential_fingerprint", credFP, "credential_generation", gen, "new_credentials", fresh, "db_login_ok", ok)
	}
	if dbErr != "" {
		a.log.Error("reload: database login failed", append(attrs, "err", dbErr)...)
		return
	}
	a.log.Info("reloaded", attrs...)
}

// login opens a session with creds and closes the previous one, whatever the
// outcome: the app holds a session only with the credentials of the file.
// The message of a failure holds neither the user name nor the password.
func (a *App) login(ctx context.Context, creds Credentials) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.DB.Timeout)
	defer cancel()
	s, err := a.connect(ctx, creds)
	a.closeSession(ctx)
	if err != nil {
		return false, scrub(describeDBError(err), creds)
	}
	a.session = s
	return true, ""
}

// closeSession closes the open session, if any; reloadMu is held.
func (a *App) closeSession(ctx context.Context) {
	if a.session != nil {
		_ = a.session.Close(ctx)
		a.session = nil
	}
}

// readCredentials reads the JSON credentials file. Its errors never quote
// the content.
func readCredentials(path string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("credentials file: %w", fileErr(err))
	}
	if json.Unmarshal(b, &c) != nil || c.Username == "" || c.Password == "" {
		return Credentials{}, fmt.Errorf("credentials file %s: not a JSON object with \"username\" and \"password\"", filepath.Base(path))
	}
	return c, nil
}

// fileErr keeps an os error's operation, path and cause.
func fileErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}

// scrub replaces the user name and password wherever they appear in msg.
func scrub(msg string, c Credentials) string {
	for _, r := range []struct{ v, with string }{{c.Password, "<password>"}, {c.Username, "<user>"}} {
		if r.v != "" {
			msg = strings.ReplaceAll(msg, r.v, r.with)
		}
	}
	return msg
}

// validName reports whether name can be a file in the secrets directory
// ("" meaning none).
func validName(name string) bool {
	return name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
