package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/redisstore"
)

// leaderboard reads every page of GET /leaderboard, limit at a time.
func (e *env) leaderboard(limit int) []map[string]any {
	e.t.Helper()
	var all []map[string]any
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(e.t, pages, 50, "paging ends")
		res := e.do("GET", fmt.Sprintf("/leaderboard?limit=%d&cursor=%s", limit, url.QueryEscape(cursor)), "")
		require.Equal(e.t, http.StatusOK, res.Status, "body: %s", res.Raw)
		require.NotEmpty(e.t, res.JSON["week_start"])
		for _, en := range res.JSON["entries"].([]any) {
			all = append(all, en.(map[string]any))
		}
		next, _ := res.JSON["next_cursor"].(string)
		if next == "" {
			return all
		}
		cursor = next
	}
}

// boardMembers returns the user ids on this week's board as Redis has it.
func (e *env) boardMembers() []uuid.UUID {
	e.t.Helper()
	b, err := redisstore.NewXPBoard(e.redis, e.prefix)
	require.NoError(e.t, err)
	entries, _, _, err := b.Page(e.t.Context(), "", 100)
	require.NoError(e.t, err)
	var ids []uuid.UUID
	for _, en := range entries {
		ids = append(ids, en.UserID)
	}
	return ids
}

func TestServer_XP_AddsToTheWeeklyBoardWhichPagesByRankWithUsernames(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	names := []string{"ada", "bob", "cyd", "dee", "eve"}
	xp := map[string][]int{"ada": {10, 20}, "bob": {30}, "cyd": {5}, "dee": {30}, "eve": {1000, 1}}
	ids := map[string]string{}
	for _, n := range names {
		ids[n], _ = e.register(n)
	}
	for _, n := range names {
		total := 0
		for _, p := range xp[n] {
			total += p
			res := e.doAs(ids[n], "POST", "/users/"+ids[n]+"/xp", fmt.Sprintf(`{"points":%d}`, p))
			require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
			assert.EqualValues(t, total, res.JSON["weekly_xp"])
			assert.Equal(t, ids[n], res.JSON["user_id"])
		}
	}

	// eve 1001, ada 30 and bob 30 and dee 30 (ties: redisrepo's order, by
	// member descending), cyd 5; pages of 2 give the same as one page.
	whole := e.leaderboard(100)
	require.Len(t, whole, 5)
	assert.Equal(t, whole, e.leaderboard(2), "pages of 2 are the board in order")
	assert.Equal(t, whole, e.leaderboard(1), "pages of 1 are the board in order")
	assert.Equal(t, "eve", whole[0]["username"])
	assert.EqualValues(t, 1001, whole[0]["xp"])
	assert.Equal(t, "cyd", whole[4]["username"])
	for i, en := range whole {
		assert.EqualValues(t, i+1, en["rank"], "ranks count from 1")
		assert.Equal(t, ids[en["username"].(string)], en["user_id"])
		if i > 0 {
			assert.LessOrEqual(t, en["xp"].(float64), whole[i-1]["xp"].(float64))
		}
	}

	// The points' bounds, and who may add them.
	bad := []struct{ name, body string }{
		{"zero", `{"points":0}`},
		{"negative", `{"points":-5}`},
		{"over 1000", `{"points":1001}`},
		{"fraction", `{"points":1.5}`},
		{"string", `{"points":"10"}`},
		{"missing", `{}`},
		{"huge", `{"points":1e300}`},
		{"unknown field", `{"points":1,"user_id":"x"}`},
	}
	for _, tt := range bad {
		res := e.doAs(ids["ada"], "POST", "/users/"+ids["ada"]+"/xp", tt.body)
		assert.Equal(t, http.StatusBadRequest, res.Status, "%s: %s", tt.name, res.Raw)
	}
	assert.Equal(t, http.StatusForbidden, e.doAs(ids["bob"], "POST", "/users/"+ids["ada"]+"/xp", `{"points":5}`).Status, "bob's session on ada")
	assert.Equal(t, http.StatusUnauthorized, e.do("POST", "/users/"+ids["ada"]+"/xp", `{"points":5}`).Status, "no session")
	assert.Equal(t, whole, e.leaderboard(100), "no refused request changed the board")

	// Query parameters.
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=ten", "?limit=1&limit=2", "?cursor=%7B%22%24gt%22%3A%22%22%7D", "?cursor=!!", "?cursor=a&cursor=b"} {
		res := e.do("GET", "/leaderboard"+q, "")
		assert.Equal(t, http.StatusBadRequest, res.Status, "%s: %s", q, res.Raw)
	}
	res := e.do("GET", "/leaderboard", "")
	require.Equal(t, http.StatusOK, res.Status)
	assert.Len(t, res.JSON["entries"], 5, "10 by default")

	// A user deleted behind the saga's back (their row only) is left out
	// of the page; the others keep their ranks.
	_, err := e.pool.Exec(t.Context(), "DELETE FROM users WHERE id = $1", ids["eve"])
	require.NoError(t, err)
	left := e.leaderboard(2)
	require.Len(t, left, 4)
	assert.Equal(t, whole[1:], left)
}

func TestServer_DeleteUser_RevokesEverySessionAndLeavesTheLeaderboard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ada, _ := e.register("ada")
	bob, _ := e.register("bob")
	tokens := []string{e.token(ada), e.login("ada", "correct horse"), e.login("ada", "correct horse")}
	require.Equal(t, http.StatusOK, e.doAs(ada, "POST", "/users/"+ada+"/xp", `{"points":50}`).Status)
	require.Equal(t, http.StatusOK, e.doAs(bob, "POST", "/users/"+bob+"/xp", `{"points":40}`).Status)
	require.ElementsMatch(t, []uuid.UUID{uuid.MustParse(ada), uuid.MustParse(bob)}, e.boardMembers())

	res := e.doAs(ada, "DELETE", "/users/"+ada, "")
	require.Equal(t, http.StatusNoContent, res.Status, "body: %s", res.Raw)

	for i, tok := range tokens {
		res := e.do("DELETE", "/sessions/current", "", "Authorization", "Bearer "+tok)
		assert.Equal(t, http.StatusUnauthorized, res.Status, "ada's session %d was revoked", i)
	}
	assert.Equal(t, []uuid.UUID{uuid.MustParse(bob)}, e.boardMembers(), "ada is off the board in Redis, not only hidden")
	board := e.leaderboard(10)
	require.Len(t, board, 1)
	assert.Equal(t, "bob", board[0]["username"])
	assert.EqualValues(t, 1, board[0]["rank"])
	assert.Equal(t, http.StatusOK, e.doAs(bob, "GET", "/users/"+bob+"/conversations", "").Status, "bob's session is untouched")
	var steps []string
	rows, err := e.pool.Query(t.Context(), "SELECT DISTINCT step_name FROM coord_history WHERE saga_id LIKE 'delete-user/%'")
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		steps = append(steps, s)
	}
	rows.Close()
	require.NoError(t, rows.Err())
	assert.Subset(t, steps, []string{"revoke-sessions", "leave-leaderboard"}, "both are steps of the delete saga")
}
