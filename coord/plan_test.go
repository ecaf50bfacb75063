package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLog_StatementsOfOneSagaFindItByPrimaryKeyWithoutStatistics checks the
// generic plans (what PostgreSQL runs once a connection has prepared a
// statement five times) of every statement that finds one saga by its id,
// on a log never analysed, as a new deployment's is for its first minutes.
// Each must find the row through coord_saga_pkey: the other indexes that
// hold the id, (status, created_at, id) and (name, created_at, id), cost
// the same for the planner without statistics, and reading one of them
// with the status as its bound reads every entry of that status, dead
// versions included, to find the id (measured: the final record's
// statement did so for every saga, and the log's throughput fell as sagas
// accumulated). Purge's statement is not among them: it finds a batch of
// old finished sagas by their ids, on a log analysed by then.
func TestLog_StatementsOfOneSagaFindItByPrimaryKeyWithoutStatistics(t *testing.T) {
	_, pool := listCoordinator(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `insert into coord_saga (id, name, status, step, state, lease_owner, lease_expires)
select 's-' || i, 'three', case when i % 4 = 0 then 'failed' else 'running' end, 1, '{}', 'token', now() - interval '1 second'
from generate_series(1, 200) i`)
	require.NoError(t, err)

	statements := []struct {
		name, sql string
	}{
		{"get", selectSQL + " where id = $1"},
		{"owner", ownerSQL},
		{"write", writeSQL},
		{"write without the WAL flush", writeAsyncSQL},
		{"write with more events", writeSQLFor(maxEvents+3, false)},
		{"final record", finalSQLFor(3)},
		{"final record with more events", finalSQLFor(maxEvents + 3)},
		{"lease", leaseSQL},
		{"release", releaseSQL},
		{"claim by id", claimIDSQL},
		{"retry", retrySQL},
		{"resolve", resolveSQL},
		{"cancel", cancelSQL},
	}
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "set plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	defer conn.Exec(ctx, "reset plan_cache_mode") //nolint:errcheck // the connection goes back to a test's pool
	for i, st := range statements {
		t.Run(st.name, func(t *testing.T) {
			name := fmt.Sprintf("plan_%d", i)
			_, err := conn.Exec(ctx, "prepare "+name+" as "+st.sql)
			require.NoError(t, err)
			defer conn.Exec(ctx, "deallocate "+name) //nolint:errcheck // best effort
			params := strings.TrimSuffix(strings.Repeat("null, ", maxParam(st.sql)), ", ")
			var plan []byte
			require.NoError(t, conn.QueryRow(ctx, "explain (format json) execute "+name+"("+params+")").Scan(&plan))
			var nodes []map[string]any
			require.NoError(t, json.Unmarshal(plan, &nodes))
			scans := map[string]bool{}
			sagaScans(nodes[0]["Plan"].(map[string]any), scans)
			require.NotEmpty(t, scans, "the plan reads no coord_saga index: %s", plan)
			for scan := range scans {
				assert.Equal(t, "coord_saga_pkey", scan, "the plan finds the saga through another path: %s", plan)
			}
		})
	}
}

// sagaScans adds to scans how each node of the plan n reads coord_saga: its
// index's name, or the node type of a scan without one.
func sagaScans(n map[string]any, scans map[string]bool) {
	index, _ := n["Index Name"].(string)
	switch {
	case strings.HasPrefix(index, "coord_saga"):
		scans[index] = true
	case n["Relation Name"] == "coord_saga" && index == "" && strings.HasSuffix(n["Node Type"].(string), "Scan"):
		scans[n["Node Type"].(string)] = true
	}
	if subs, ok := n["Plans"].([]any); ok {
		for _, s := range subs {
			sagaScans(s.(map[string]any), scans)
		}
	}
}

var paramRE = regexp.MustCompile(`\$(\d+)`)

// maxParam returns the highest parameter number in sql.
func maxParam(sql string) int {
	n := 0
	for _, m := range paramRE.FindAllStringSubmatch(sql, -1) {
		v, _ := strconv.Atoi(m[1])
		n = max(n, v)
	}
	return n
}
