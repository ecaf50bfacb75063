package servicetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// RequireEnv is the environment variable that turns a missing service from a
// skip into a failure.
const RequireEnv = "POLYSTORE_REQUIRE_SERVICES"

// pingTimeout bounds how long a configured URL may take to answer.
const pingTimeout = 10 * time.Second

// store describes how to find one kind of server.
type store struct {
	name   string // for messages: "PostgreSQL"
	envVar string // "POSTGRES_URL"
	// ping checks that url answers.
	ping func(ctx context.Context, url string) error
	// start runs a container and returns its URL; nil when there is no
	// container for this store (the URL must come from the environment).
	start func(ctx context.Context) (string, error)
	// docker reports whether a Docker engine answers; nil means ask it.
	dockerCheck func() bool

	once sync.Once
	url  string
	err  error  // the configured URL or the container failed: fail the test
	skip string // no server at all: skip the test, or fail it under RequireEnv
}

// resolve returns the store's URL, or ends the test: Fatal when a configured
// server is broken, Skip (or Fatal under RequireEnv) when there is none.
func (s *store) resolve(tb testing.TB) string {
	tb.Helper()
	s.once.Do(s.find)
	switch {
	case s.err != nil:
		tb.Fatalf("servicetest: %v", s.err)
	case s.skip != "":
		missingService(tb, s.skip)
	}
	return s.url
}

func (s *store) find() {
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()

	if url := os.Getenv(s.envVar); url != "" {
		if err := s.ping(ctx, url); err != nil {
			s.err = fmt.Errorf("%s at %s=%s does not answer: %w", s.name, s.envVar, url, err)
			return
		}
		s.url = url
		return
	}

	if s.start != nil && s.docker() {
		// Pulling an image can take far longer than a ping.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		url, err := s.start(ctx)
		if err != nil {
			s.err = fmt.Errorf("starting a %s container: %w", s.name, err)
			return
		}
		if err := s.ping(ctx, url); err != nil {
			s.err = fmt.Errorf("%s container at %s does not answer: %w", s.name, url, err)
			return
		}
		s.url = url
		return
	}

	if s.start == nil {
		s.skip = fmt.Sprintf("no %s: set %s (run `make services`, which starts one and prints the URL)", s.name, s.envVar)
		return
	}
	s.skip = fmt.Sprintf("no %s server: set %s (run `make services`, which starts one and prints the URL) or start a Docker engine for testcontainers",
		s.name, s.envVar)
}

func (s *store) docker() bool {
	if s.dockerCheck != nil {
		return s.dockerCheck()
	}
	return dockerAnswers()
}

var (
	dockerOnce sync.Once
	dockerOK   bool
)

// dockerAnswers reports whether a Docker engine answers, asking it once.
func dockerAnswers() bool {
	dockerOnce.Do(func() {
		defer func() {
			// testcontainers panics in some set-ups without an engine.
			if recover() != nil {
				dockerOK = false
			}
		}()
		p, err := testcontainers.ProviderDefault.GetProvider()
		if err != nil {
			return
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dockerOK = p.Health(ctx) == nil
	})
	return dockerOK
}

// uniqueName returns prefix followed by 16 random hex digits: a name no other
// test, package or earlier run uses.
func uniqueName(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b)
}

// cleanupContext is the context for removing a test's data: the test's own
// context is already cancelled when cleanups run.
func cleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
