package browsertest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/coord/coordhttp"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

const token = "browser-test-token"

// chromium returns the path of the browser, failing the test when it is
// missing and POLYSTORE_REQUIRE_SERVICES is set (skipping otherwise).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("POLYSTORE_REQUIRE_SERVICES") != "" {
		t.Fatal("no chromium on PATH (apt-get install -y chromium, or set CHROMIUM)")
	}
	t.Skip("no chromium on PATH (apt-get install -y chromium, or set CHROMIUM)")
	return ""
}

// browser starts a headless Chromium with a fresh profile; the returned
// context drives one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 860),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	// The first call starts the browser, which lives as long as its
	// context: no timeout on that one, one on the calls after it.
	require.NoError(t, chromedp.Do(ctx))
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)
	return ctx
}

type order struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// shop is a service with a two-store saga (a PostgreSQL row, then a MongoDB
// document with its barrier) whose MongoDB step and compensation fail while
// down is set, and the console mounted under /admin/ behind a bearer token.
type shop struct {
	pool *pgxpool.Pool
	docs *mongo.Collection
	c    *coord.Coordinator
	h    *coord.Handle[order]
	down atomic.Bool
	srv  *httptest.Server
}

var errDown = errors.New("mongodb unreachable")

func newShop(t *testing.T) *shop {
	t.Helper()
	ctx := context.Background()
	s := &shop{pool: servicetest.Postgres(t), docs: servicetest.Mongo(t).Collection("receipts")}
	_, err := s.pool.Exec(ctx, `create table orders (id text primary key, email text not null)`)
	require.NoError(t, err)
	s.c, err = coord.New(ctx, s.pool, coord.Options{})
	require.NoError(t, err)
	fast := coord.RetryPolicy{Attempts: 2, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	s.h, err = coord.Register(s.c, coord.Define("place-order",
		coord.Step[order]{
			Name: "insert-order",
			TxAction: func(ctx context.Context, tx coord.Tx, o *order) error {
				_, err := tx.Exec(ctx, `insert into orders (id, email) values ($1, $2)`, o.ID, o.Email)
				return err
			},
			TxCompensate: func(ctx context.Context, tx coord.Tx, o *order) error {
				_, err := tx.Exec(ctx, `delete from orders where id = $1`, o.ID)
				return err
			},
			Retry: fast,
		},
		coord.Step[order]{
			Name: "insert-receipt",
			Action: func(ctx context.Context, o *order) error {
				if _, err := coord.MongoInsert(ctx, s.docs, bson.D{{Key: "_id", Value: o.ID}}); err != nil {
					return err
				}
				if s.down.Load() {
					return errDown // after the write, as a timeout would
				}
				return nil
			},
			Compensate: func(ctx context.Context, o *order) error {
				if s.down.Load() {
					return errDown
				}
				_, err := coord.MongoDelete(ctx, s.docs, o.ID)
				return err
			},
			Retry: fast,
		},
		coord.Step[order]{Name: "confirm", Kind: coord.Pivot, Action: func(context.Context, *order) error { return nil }},
	))
	require.NoError(t, err)
	console, err := coordhttp.New(s.c, coordhttp.Options{Authorize: func(r *http.Request) (string, bool) {
		return "browser-operator", r.Header.Get("Authorization") == "Bearer "+token
	}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", console))
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// stores reports whether the order's row and receipt exist.
func (s *shop) stores(t *testing.T, id string) (row, receipt bool) {
	t.Helper()
	ctx := context.Background()
	var n int
	require.NoError(t, s.pool.QueryRow(ctx, `select count(*) from orders where id = $1`, id).Scan(&n))
	docs, err := s.docs.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
	require.NoError(t, err)
	return n == 1, docs == 1
}

// TestConsole_RetryOfAFailedSagaInTheBrowserEndsCompensated opens the
// console in Chromium, finds the failed saga, clears the fault, clicks
// Retry, and sees it end compensated in the page and in both stores.
func TestConsole_RetryOfAFailedSagaInTheBrowserEndsCompensated(t *testing.T) {
	s := newShop(t)
	_, err := s.h.Run(context.Background(), "order-ok", &order{ID: "order-ok", Email: "ok@example.com"})
	require.NoError(t, err)
	s.down.Store(true)
	_, err = s.h.Run(context.Background(), "order-42", &order{ID: "order-42", Email: "buyer@example.com"})
	require.ErrorIs(t, err, coord.ErrFailed)
	row, receipt := s.stores(t, "order-42")
	require.True(t, row && receipt, "the failed saga left its row and receipt")

	ctx := browser(t)
	// The service's authorisation: every request of this tab carries the
	// token.
	_, err = chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Bearer " + token},
	})
	require.NoError(t, err)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(s.srv.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.CSS(`section.counts`)),
	))
	index, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // PNG
	require.NoError(t, err)
	assert.Contains(t, index, "Need a person")
	assert.Contains(t, index, "order-42")
	if path := os.Getenv("COORD_CONSOLE_SCREENSHOT"); path != "" {
		require.NoError(t, os.WriteFile(path, shot, 0o644))
	}

	s.down.Store(false) // the fault is cleared
	// The failed saga's link in the "need a person" table (an XPath search).
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(`//h2[starts-with(., "Need a person")]/following-sibling::table[1]//a[text()="order-42"]`),
		chromedp.WaitVisible(chromedp.CSS(`#status`)),
	))
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#status`)))
	require.NoError(t, err)
	require.Equal(t, "failed", status)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`form[action$="/retry"] input[name="why"]`), "mongodb is back"),
		chromedp.Click(chromedp.CSS(`button[value="retry"]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.message`)),
	))
	status, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#status`)))
	require.NoError(t, err)
	message, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`p.message`)))
	require.NoError(t, err)
	assert.Equal(t, "compensated", status)
	assert.Equal(t, "retry: done", message)

	timeline, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`ol.timeline`)))
	require.NoError(t, err)
	assert.Contains(t, timeline, "retried")
	assert.Contains(t, timeline, "mongodb is back")
	assert.Contains(t, timeline, "browser-operator")

	row, receipt = s.stores(t, "order-42")
	assert.False(t, row, "the order row was compensated")
	assert.False(t, receipt, "the receipt was compensated")
	info, err := s.c.Get(context.Background(), "order-42")
	require.NoError(t, err)
	assert.Equal(t, coord.StatusCompensated, info.Status)
}

// TestConsole_ABrowserWithoutAuthorisationGetsNothing opens every page of
// the console without the token: each answers 401 with an empty body (so
// Chromium shows its own error page, net::ERR_HTTP_RESPONSE_CODE_FAILURE),
// nothing of the console reaches the page, and the saga is unchanged.
func TestConsole_ABrowserWithoutAuthorisationGetsNothing(t *testing.T) {
	s := newShop(t)
	s.down.Store(true)
	_, err := s.h.Run(context.Background(), "order-42", &order{ID: "order-42", Email: "buyer@example.com"})
	require.ErrorIs(t, err, coord.ErrFailed)

	ctx := browser(t)
	var mu sync.Mutex
	statuses := map[string]int64{}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if r, ok := ev.(*network.EventResponseReceived); ok {
			mu.Lock()
			statuses[r.Response.URL] = r.Response.Status
			mu.Unlock()
		}
	}))
	_, err = chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	for _, path := range []string{"", "sagas/order-42", "api/sagas", "api/sagas/order-42", "style.css"} {
		url := s.srv.URL + "/admin/" + path
		err := chromedp.Do(ctx, chromedp.Navigate(url))
		var loadErr *chromedp.LoadError
		require.ErrorAs(t, err, &loadErr, path)
		assert.Equal(t, "net::ERR_HTTP_RESPONSE_CODE_FAILURE", loadErr.ErrorText, path)
		mu.Lock()
		assert.EqualValues(t, http.StatusUnauthorized, statuses[url], path)
		mu.Unlock()
		html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`html`)))
		require.NoError(t, err, path)
		// Chromium's own error page (which names the URL): nothing of the
		// console, the saga or its error.
		for _, leak := range []string{"place-order", "Need a person", "Timeline", "mongodb unreachable", "compensation-failed", "buyer@example.com"} {
			assert.False(t, strings.Contains(html, leak), "%s: the page shows %q", path, leak)
		}
	}
	info, err := s.c.Get(context.Background(), "order-42")
	require.NoError(t, err)
	assert.Equal(t, coord.StatusFailed, info.Status)
}
