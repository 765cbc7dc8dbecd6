package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgConnector returns a Connector that logs in to PostgreSQL at addr and
// checks the session with a ping. Only the address comes from addr (and the
// PG* environment); user and password are always those of the file.
func pgConnector(addr DBAddr) (Connector, error) {
	base, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=%s sslmode=%s",
		quote(addr.Host), quote(addr.Port), quote(addr.Database), quote(addr.SSLMode)))
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL address: %w", err)
	}
	return func(ctx context.Context, c Credentials) (Session, error) {
		cfg := base.Copy()
		cfg.User, cfg.Password = c.Username, c.Password
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if err := conn.Ping(ctx); err != nil {
			_ = conn.Close(ctx)
			return nil, err
		}
		return conn, nil
	}, nil
}

// quote quotes a keyword/value connection string value.
func quote(v string) string {
	out := []byte{'\''}
	for i := 0; i < len(v); i++ {
		if v[i] == '\'' || v[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, v[i])
	}
	return string(append(out, '\''))
}

// describeDBError is a short message for a failed login: the server's SQLSTATE
// and message, a timeout, or a network error. pgx's own wording quotes the
// user name; the caller scrubs what remains.
func describeDBError(err error) string {
	var pg *pgconn.PgError
	var ne net.Error
	switch {
	case errors.As(err, &pg):
		return fmt.Sprintf("login refused: %s (SQLSTATE %s)", pg.Message, pg.Code)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "login timed out"
	case errors.As(err, &ne):
		return "cannot reach the database: " + ne.Error()
	default:
		return "login failed: " + err.Error()
	}
}
