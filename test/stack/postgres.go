package stack

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// startPostgres runs PostgreSQL 15 (Debian) as the postgres user on its own
// port, reachable from the host and from Pods (the bridge gateway). initdb
// runs once into the cache; each start copies that template.
func (s *Stack) startPostgres(ctx context.Context) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("no postgres user (run `make deps`): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}

	tmpl, pwFile := s.p.cache("pg-template"), s.p.cache("pg-password")
	_, errVer := os.Stat(filepath.Join(tmpl, "PG_VERSION"))
	_, errPw := os.Stat(pwFile)
	if errVer != nil || errPw != nil { // absent, or an interrupted initdb
		if err := s.initdb(ctx, tmpl, pwFile, uid, gid); err != nil {
			return err
		}
	}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		return err
	}
	s.env.PGPassword = string(pw)
	pgdir := s.p.join("pg")
	if _, err := run(ctx, "cp", "-a", tmpl, pgdir); err != nil {
		return err
	}
	sock := s.p.join("pg-sock")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		return err
	}
	if err := os.Chown(sock, uid, gid); err != nil {
		return err
	}
	c, err := s.start("postgresql", []string{pgBin + "/postgres", "-D", pgdir, "-p", strconv.Itoa(PostgresPort),
		"-c", "listen_addresses=127.0.0.1," + Gateway, "-c", "unix_socket_directories=" + sock,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB", "-c", "max_connections=200", "-c", "log_min_messages=warning"}, startOpts{cred: cred})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, s.env.PGURL())
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
}

func (s *Stack) initdb(ctx context.Context, dir, pwFile string, uid, gid int) error {
	s.cfg.Progress("  postgresql: initdb into the cache (first start only)")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	pw := randHex(16)
	tmpPw := s.p.join("run", "pg-initdb-pw")
	if err := os.WriteFile(tmpPw, []byte(pw), 0o600); err != nil {
		return err
	}
	defer os.Remove(tmpPw)
	if err := os.Chown(tmpPw, uid, gid); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	if out, err := run(ctx, "setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(gid), "--clear-groups",
		pgBin+"/initdb", "-D", dir, "-U", "postgres", "--auth=scram-sha-256", "--pwfile="+tmpPw,
		"--locale=C", "-E", "UTF8", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	hba, err := os.OpenFile(filepath.Join(dir, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(hba, "host all all %s scram-sha-256\n", PodCIDR)
	if cerr := hba.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.WriteFile(pwFile, []byte(pw), 0o600)
}

// PGURL is a connection URL for the superuser, from this host.
func (e Env) PGURL() string {
	return fmt.Sprintf("postgres://%s:%s@%s:%s/postgres?sslmode=disable", e.PGUser, e.PGPassword, e.PGHost, e.PGPort)
}
