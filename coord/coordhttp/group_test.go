package coordhttp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/coord/coordhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConsole_ShowsASagaStoppedInAParallelGroup leaves a saga failed at a
// parallel group (a member's compensation keeps failing): the API and the
// page name the group as its step, and its members in the timeline.
func TestConsole_ShowsASagaStoppedInAParallelGroup(t *testing.T) {
	e := newEnv(t, coordhttp.Options{}, coord.Options{})
	fast := coord.RetryPolicy{Attempts: 2, Backoff: 1e6, MaxBackoff: 2e6}
	ok := func(context.Context, *order) error { return nil }
	down := func(context.Context, *order) error { return errDown }
	h, err := coord.Register(e.c, coord.Define("fan-out",
		coord.Parallel("notify",
			coord.Step[order]{Name: "email", Action: ok, Compensate: down, Retry: fast},
			coord.Step[order]{Name: "sms", Action: ok, Compensate: ok, Retry: fast}),
		coord.Step[order]{Name: "confirm", Kind: coord.Pivot, Action: down, Retry: fast},
	))
	require.NoError(t, err)
	_, err = h.Run(context.Background(), "g1", &order{ID: "g1"})
	require.ErrorIs(t, err, coord.ErrFailed)

	r := e.do(t, "GET", "api/sagas/g1", nil, auth...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var v coordhttp.SagaView
	require.NoError(t, json.Unmarshal([]byte(r.body), &v))
	assert.Equal(t, coord.StatusFailed, v.Saga.Status)
	assert.Equal(t, "notify", v.Saga.StepName)
	last := v.History[len(v.History)-1]
	assert.Equal(t, coord.EventCompensationFailed, last.Kind)
	assert.Equal(t, "email", last.StepName, "the member whose compensation failed")

	page := e.do(t, "GET", "sagas/g1", nil, auth...)
	require.Equal(t, http.StatusOK, page.code)
	for _, want := range []string{"notify", "email", "sms", "compensation-failed", errDown.Error(), `action="g1/retry"`} {
		assert.Contains(t, page.body, want)
	}
}
