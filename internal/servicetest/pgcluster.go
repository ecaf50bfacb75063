package servicetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGBinDirEnv names the directory of initdb and postgres for PGCluster,
// when they are neither where pg_config --bindir says nor in
// /usr/lib/postgresql/<version>/bin.
const PGBinDirEnv = "POLYSTORE_PG_BINDIR"

// StopMode is how PGCluster.Stop and PGCluster.Restart end the server: the
// modes of pg_ctl stop -m, sent as the postmaster's signals.
type StopMode int

const (
	// Fast rolls back open transactions, disconnects the clients and shuts
	// down cleanly with a checkpoint (SIGINT): nothing committed is lost.
	Fast StopMode = iota
	// Immediate makes every server process exit at once, without flushing
	// or a checkpoint (SIGQUIT), as a crash of the server would: the next
	// start runs crash recovery, and the transactions committed with
	// synchronous_commit=off whose WAL was not yet written are lost.
	Immediate
)

func (m StopMode) String() string {
	if m == Immediate {
		return "immediate"
	}
	return "fast"
}

// PGClusterOptions configures a PGCluster. The zero value is a cluster with
// PostgreSQL's defaults.
type PGClusterOptions struct {
	// Settings are server settings passed as -c name=value on every start,
	// such as "wal_writer_delay": "10s". listen_addresses, port and
	// unix_socket_directories are PGCluster's own.
	Settings map[string]string
}

// pgStartTimeout bounds a start, crash recovery included.
const pgStartTimeout = 60 * time.Second

// PGCluster is a PostgreSQL server of the test's own: a data directory made
// by initdb in t.TempDir(), served on a free loopback port, for tests that
// restart or crash the server (the shared one must never be). It is stopped
// when the test ends, whatever state the test left it in. Its methods are
// safe for concurrent use.
type PGCluster struct {
	tb      testing.TB
	bin     string
	dir     string // the data directory
	logPath string
	port    int
	args    []string
	cred    *syscall.Credential // the user the server runs as; nil: this process's

	mu   sync.Mutex
	cmd  *exec.Cmd     // nil when stopped
	done chan struct{} // closed when cmd has exited
}

// NewPGCluster creates, starts and returns a private PostgreSQL cluster.
// When initdb or postgres cannot be found (see PGBinDirEnv), or this
// process runs as root and there is no "postgres" user to run them as, the
// test is skipped, or fails under POLYSTORE_REQUIRE_SERVICES=1 (nil is
// returned only to a tb whose Skipf and Fatalf return). It fails the test
// when the cluster cannot be created or does not start.
func NewPGCluster(tb testing.TB, opts PGClusterOptions) *PGCluster {
	tb.Helper()
	bin, err := pgBinDir()
	if err == nil {
		_, err = os.Stat(filepath.Join(bin, "initdb"))
	}
	if err != nil {
		missingService(tb, fmt.Sprintf("no PostgreSQL server binaries for a private cluster (%v): install postgresql, or set %s", err, PGBinDirEnv))
		return nil
	}
	cred, err := serverCredential()
	if err != nil {
		missingService(tb, err.Error())
		return nil
	}

	root := tb.TempDir()
	c := &PGCluster{tb: tb, bin: bin, dir: filepath.Join(root, "data"), logPath: filepath.Join(root, "postgres.log"), cred: cred}
	if cred != nil {
		// The server refuses to run as root; its user must reach the data
		// directory through the test's temporary directories.
		for _, d := range []string{filepath.Dir(root), root} {
			if err := os.Chmod(d, 0o711); err != nil {
				tb.Fatalf("servicetest: %v", err)
			}
		}
		if err := os.Mkdir(c.dir, 0o700); err != nil {
			tb.Fatalf("servicetest: %v", err)
		}
		if err := os.Chown(c.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("servicetest: %v", err)
		}
	}
	// Registered before the start, so that a start that fails half-way is
	// stopped too.
	tb.Cleanup(func() {
		if err := c.Stop(Immediate); err != nil {
			tb.Errorf("servicetest: stopping the private PostgreSQL cluster: %v", err)
		}
	})

	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", c.dir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = root
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("servicetest: initdb: %v\n%s", err, out)
	}

	names := make([]string, 0, len(opts.Settings))
	for name := range opts.Settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c.args = append(c.args, "-c", name+"="+opts.Settings[name])
	}

	// A port found free may be taken by another process before the server
	// binds it: try a few.
	for try := 1; ; try++ {
		c.port, err = freePort()
		if err == nil {
			err = c.Start()
		}
		if err == nil {
			return c
		}
		if try == 3 {
			tb.Fatalf("servicetest: starting a private PostgreSQL cluster: %v", err)
		}
	}
}

// missingService skips the test, or fails it under RequireEnv.
func missingService(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("servicetest: %s (%s=1 forbids skipping)", why, RequireEnv)
		return
	}
	tb.Skipf("servicetest: %s", why)
}

// pgBinDir returns the directory of the PostgreSQL server binaries:
// PGBinDirEnv, else pg_config --bindir when it holds initdb, else the newest
// /usr/lib/postgresql/<version>/bin.
func pgBinDir() (string, error) {
	if dir := os.Getenv(PGBinDirEnv); dir != "" {
		return dir, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestVersion := "", -1
	for _, d := range dirs {
		bin := filepath.Dir(d)
		if v, err := strconv.Atoi(filepath.Base(filepath.Dir(bin))); err == nil && v > bestVersion {
			best, bestVersion = bin, v
		}
	}
	if best == "" {
		return "", errors.New("initdb not found by pg_config --bindir nor in /usr/lib/postgresql/*/bin")
	}
	return best, nil
}

// serverCredential returns the user to run the server as: nil (this
// process's) unless this process is root, which PostgreSQL refuses.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and no user to run a private PostgreSQL cluster as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL returns a URL of the cluster's "postgres" database as its superuser
// "postgres", with no password. Create databases in it as needed: the
// cluster is the test's alone.
func (c *PGCluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Port returns the cluster's loopback port, the same across restarts.
func (c *PGCluster) Port() int { return c.port }

// DataDir returns the cluster's data directory.
func (c *PGCluster) DataDir() string { return c.dir }

// PID returns the process id of the running server (the postmaster), 0
// when it is stopped.
func (c *PGCluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Start starts the stopped server, running crash recovery first if it was
// stopped Immediate, and returns once it accepts connections. It returns
// an error naming the server's log when it does not start within a minute;
// starting a running server is an error.
func (c *PGCluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return errors.New("the private PostgreSQL cluster is running already")
	}
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	args := append([]string{"-D", c.dir, "-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="}, c.args...)
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = filepath.Dir(c.dir)
	// Its own process group, so that a signal to the test's group (^C)
	// does not reach it before the cleanup does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.cmd, c.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), pgStartTimeout)
	defer cancel()
	if err := c.waitReady(ctx, done); err != nil {
		c.stopLocked(Immediate)
		return fmt.Errorf("postgres on port %d: %w\n%s", c.port, err, c.logTail())
	}
	return nil
}

// waitReady polls the server until it accepts a connection, it exits, or
// ctx ends.
func (c *PGCluster) waitReady(ctx context.Context, exited <-chan struct{}) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.Connect(ctx, c.URL())
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-exited:
			return errors.New("the server exited during its start")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", err)
		case <-tick.C:
		}
	}
}

// logTail returns the last lines of the server's log, for error messages.
func (c *PGCluster) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "last lines of " + c.logPath + ":\n" + string(bytes.Join(lines, []byte("\n")))
}

// Stop stops the server in the given mode, signalling its postmaster by
// process id, and waits until every server process has exited. Stopping a
// stopped server does nothing. It returns an error when the server did not
// exit within a minute, after killing it.
func (c *PGCluster) Stop(mode StopMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopLocked(mode)
}

func (c *PGCluster) stopLocked(mode StopMode) error {
	if c.cmd == nil {
		return nil
	}
	cmd, done := c.cmd, c.done
	c.cmd, c.done = nil, nil
	sig := syscall.SIGINT
	if mode == Immediate {
		sig = syscall.SIGQUIT
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling postgres (pid %d): %w", cmd.Process.Pid, err)
	}
	// The postmaster exits after its children (it waits for them in every
	// mode), so its exit means the data directory is free.
	select {
	case <-done:
		return nil
	case <-time.After(pgStartTimeout):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its process group
		<-done
		return fmt.Errorf("postgres (pid %d) did not stop in %s mode within %v; killed", cmd.Process.Pid, mode, pgStartTimeout)
	}
}

// Restart stops the server in the given mode and starts it again on the
// same port and data directory. After an Immediate stop the server runs
// crash recovery: what it had committed durably is there, and transactions
// committed with synchronous_commit=off whose WAL was still in its buffers
// are gone. Clients' connections do not survive a restart.
func (c *PGCluster) Restart(mode StopMode) error {
	if err := c.Stop(mode); err != nil {
		return err
	}
	return c.Start()
}

// CreateDatabase creates a database on the cluster and returns a URL of it.
func (c *PGCluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return withDatabase(c.URL(), name)
}
