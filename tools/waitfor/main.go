// Command waitfor waits until every server named by a URL on its command line
// answers a ping, trying each again until the timeout. It knows PostgreSQL
// (postgres://), Redis (redis://) and MongoDB (mongodb://) URLs.
//
// It exits 0 when all answered, and 1 naming each server that did not,
// with the last error it gave.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	timeout := flag.Duration("timeout", 60*time.Second, "how long to wait for all servers")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed bool
	)
	for _, url := range flag.Args() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := wait(ctx, url); err != nil {
				mu.Lock()
				failed = true
				fmt.Fprintf(os.Stderr, "waitfor: %s did not answer within %s: %v\n", url, *timeout, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed {
		os.Exit(1)
	}
}

// wait pings url until it answers or ctx ends, returning the last error.
func wait(ctx context.Context, url string) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := ping(attempt, url)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, url string) error {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	case strings.HasPrefix(url, "redis://"), strings.HasPrefix(url, "rediss://"):
		opts, err := redis.ParseURL(url)
		if err != nil {
			return err
		}
		c := redis.NewClient(opts)
		defer c.Close()
		return c.Ping(ctx).Err()
	case strings.HasPrefix(url, "mongodb://"), strings.HasPrefix(url, "mongodb+srv://"):
		c, err := mongo.Connect(options.Client().ApplyURI(url).SetServerSelectionTimeout(2 * time.Second))
		if err != nil {
			return err
		}
		defer c.Disconnect(context.Background())
		return c.Ping(ctx, nil)
	}
	return errors.New("unknown URL scheme")
}
