package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinDir returns the directory of initdb and pg_ctl: POLYSTORE_PG_BINDIR (the
// variable internal/servicetest.PGCluster reads too), else
// Debian's /usr/lib/postgresql/15/bin (this project's), else the newest
// /usr/lib/postgresql/*/bin, else pg_config --bindir, else initdb's on PATH.
func pgBinDir() (string, error) {
	has := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "initdb"))
		return err == nil
	}
	if dir := os.Getenv("POLYSTORE_PG_BINDIR"); dir != "" {
		if !has(dir) {
			return "", fmt.Errorf("POLYSTORE_PG_BINDIR=%s has no initdb", dir)
		}
		return dir, nil
	}
	if has("/usr/lib/postgresql/15/bin") {
		return "/usr/lib/postgresql/15/bin", nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(found, func(a, b string) int { return cmp.Compare(pgMajor(a), pgMajor(b)) })
	if len(found) > 0 {
		return filepath.Dir(found[len(found)-1]), nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil && has(strings.TrimSpace(string(out))) {
		return strings.TrimSpace(string(out)), nil
	}
	if path, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(path), nil
	}
	return "", errors.New("no initdb: install PostgreSQL's server programs (postgresql on Debian) or set POLYSTORE_PG_BINDIR")
}

// pgMajor is the major version in /usr/lib/postgresql/<major>/bin/initdb.
func pgMajor(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// proc is a process the harness started and stops by its pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
}

// startProc starts bin with args, its output in logPath.
func startProc(name, logPath, bin string, args, env []string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited tells whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process (by its pid) and waits for it to end, at
// most grace; past it, SIGKILL.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// freePort returns a loopback port nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls check every 50ms until it returns nil or timeout passes,
// and returns its last error then.
func waitFor(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgCluster is a private PostgreSQL cluster in a temp dir on a free port.
type pgCluster struct {
	bin            string // initdb's and pg_ctl's directory
	dir, data, log string
	port           int
	asPostgres     bool // running as root: initdb and pg_ctl run as the postgres user
}

// startPostgres runs initdb and starts a cluster under dir.
func startPostgres(ctx context.Context, dir string) (*pgCluster, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &pgCluster{bin: bin, dir: filepath.Join(dir, "pg"), port: port, asPostgres: os.Geteuid() == 0}
	c.data, c.log = filepath.Join(c.dir, "data"), filepath.Join(c.dir, "postgres.log")
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	if c.asPostgres { // initdb refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if err := c.run(ctx, "initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, err
	}
	if err := c.ctl(ctx, "start"); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		_ = c.stop(ctx)
		return nil, err
	}
	defer conn.Close(ctx)
	for _, db := range []string{"chaos", "ferretdb"} {
		if _, err := conn.Exec(ctx, "create database "+db); err != nil {
			_ = c.stop(ctx)
			return nil, err
		}
	}
	return c, nil
}

func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// run runs one of PostgreSQL's programs, as the postgres user when the
// harness is root.
func (c *pgCluster) run(ctx context.Context, prog string, args ...string) error {
	bin := filepath.Join(c.bin, prog)
	if c.asPostgres {
		args = append([]string{"-u", "postgres", "--", bin}, args...)
		bin = "runuser"
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	return nil
}

// ctl runs pg_ctl action (start, stop, restart) and waits for it.
func (c *pgCluster) ctl(ctx context.Context, action string, extra ...string) error {
	args := []string{action, "-D", c.data, "-l", c.log, "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c max_connections=200", c.port, c.dir)}
	return c.run(ctx, "pg_ctl", append(args, extra...)...)
}

// restart is "PostgreSQL restarted": pg_ctl restart -m fast, what
// pg_ctlcluster restart does for a packaged cluster.
func (c *pgCluster) restart(ctx context.Context) error { return c.ctl(ctx, "restart", "-m", "fast") }

// crash is "PostgreSQL crashed": pg_ctl restart -m immediate, whose stop
// makes every server process quit at once without a checkpoint or a
// flush of the WAL buffers, then crash recovery at start. The commits
// made with synchronous_commit=off (coord's records after retriable
// steps) whose WAL was still in those buffers are lost, as in a real
// crash: fsync=off (ctl) does not hide that, since it only skips flushing
// the operating system's cache, which a process crash keeps.
func (c *pgCluster) crash(ctx context.Context) error {
	return c.ctl(ctx, "restart", "-m", "immediate")
}

// stop stops the cluster (pg_ctl stop -m fast signals the postmaster's
// pid), then kills that pid if it is still there.
func (c *pgCluster) stop(ctx context.Context) error {
	pid := c.pid()
	err := c.ctl(ctx, "stop", "-m", "fast")
	if pid > 0 && syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return err
}

// pid is the postmaster's, from postmaster.pid; 0 when none.
func (c *pgCluster) pid() int {
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

// redisServer is a private Redis without persistence.
type redisServer struct {
	dir  string
	port int
	p    *proc
}

func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &redisServer{dir: filepath.Join(dir, "redis"), port: port}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	return r, r.start(ctx)
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *redisServer) start(ctx context.Context) error {
	p, err := startProc("redis-server", filepath.Join(r.dir, "redis.log"), "redis-server",
		[]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir}, nil)
	if err != nil {
		return err
	}
	r.p = p
	return waitFor(ctx, 20*time.Second, func() error {
		if p.exited() {
			return errors.New("redis-server exited (see redis.log)")
		}
		return dialable(r.addr())
	})
}

// restart is "Redis restarted": SIGTERM by its pid, then the same server
// again, empty (no persistence: the sessions and the cache are gone).
func (r *redisServer) restart(ctx context.Context, down time.Duration) error {
	r.p.stop(syscall.SIGTERM, 10*time.Second)
	time.Sleep(down)
	return r.start(ctx)
}

// ferretDB is the MongoDB-compatible server on the private PostgreSQL.
type ferretDB struct {
	bin, dir, pgURL string
	port            int
	p               *proc
}

func startFerretDB(ctx context.Context, bin, dir, pgURL string) (*ferretDB, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	f := &ferretDB{bin: bin, dir: filepath.Join(dir, "ferretdb"), pgURL: pgURL, port: port}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return nil, err
	}
	return f, f.start(ctx)
}

func (f *ferretDB) addr() string { return fmt.Sprintf("127.0.0.1:%d", f.port) }

func (f *ferretDB) start(ctx context.Context) error {
	p, err := startProc("ferretdb", filepath.Join(f.dir, "ferretdb.log"), f.bin,
		[]string{"-listen", f.addr(), "-postgresql-url", f.pgURL}, nil)
	if err != nil {
		return err
	}
	f.p = p
	return waitFor(ctx, 30*time.Second, func() error {
		if p.exited() {
			return errors.New("ferretdb exited (see ferretdb.log)")
		}
		return dialable(f.addr())
	})
}

// kill is "FerretDB killed with SIGKILL and restarted".
func (f *ferretDB) kill(ctx context.Context, down time.Duration) error {
	f.p.stop(syscall.SIGKILL, 10*time.Second)
	time.Sleep(down)
	return f.start(ctx)
}

func dialable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// exampleServer is the example server, run from the binary built from the
// checkout.
type exampleServer struct {
	name string
	base string
	p    *proc
	log  string
}

func startServer(ctx context.Context, name, bin, dir string, env []string) (*exampleServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &exampleServer{name: name, base: fmt.Sprintf("http://127.0.0.1:%d", port), log: filepath.Join(dir, name+".log")}
	s.p, err = startProc(name, s.log, bin, nil, append(env, "ADDR="+fmt.Sprintf("127.0.0.1:%d", port)))
	if err != nil {
		return nil, err
	}
	// A server that accepts but does not answer must not hang the poll:
	// each try is bounded, so waitFor's bound holds.
	client := &http.Client{Timeout: 2 * time.Second}
	err = waitFor(ctx, 60*time.Second, func() error {
		if s.p.exited() {
			return fmt.Errorf("%s exited: %s", name, lastLines(readFile(s.log), 5))
		}
		res, err := client.Get(s.base + "/livez")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/livez: %s", res.Status)
		}
		return nil
	})
	if err != nil {
		s.p.stop(syscall.SIGKILL, 5*time.Second)
		return nil, fmt.Errorf("%s did not come up: %w", name, err)
	}
	return s, nil
}

// buildBinaries builds the example server from the checkout at root and
// FerretDB from tools/, into dir.
func buildBinaries(ctx context.Context, root, dir string) (server, ferret string, err error) {
	server, ferret = filepath.Join(dir, "bin", "server"), filepath.Join(dir, "bin", "ferretdb")
	for _, b := range []struct{ dir, out, pkg string }{
		{root, server, "./examples/server"},
		{filepath.Join(root, "tools"), ferret, "./ferretdb"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w: %s", b.pkg, err, lastLines(string(out), 10))
		}
	}
	return server, ferret, nil
}

// repoRoot finds the checkout: the nearest directory above the working
// directory whose go.mod is the library's.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 10 {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/polystore/polystore\n") {
			return dir, nil
		}
		dir = filepath.Dir(dir)
	}
	return "", errors.New("no polystore checkout above the working directory (give -root)")
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
