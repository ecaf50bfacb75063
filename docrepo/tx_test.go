package docrepo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/polystore/polystore/docrepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWithTransaction_UnsupportedDeploymentReturnsErrBeforeRunningFn(t *testing.T) {
	ctx := context.Background()
	_, db := articles(t)
	ok, err := docrepo.SupportsTransactions(ctx, db.Client())
	require.NoError(t, err)
	if ok {
		t.Skip("the server supports transactions: TestWithTransaction_CommitsOrAborts covers it")
	}

	ran := false
	err = docrepo.WithTransaction(ctx, db.Client(), func(context.Context) error {
		ran = true
		return nil
	})

	assert.ErrorIs(t, err, docrepo.ErrTransactionsUnsupported)
	assert.False(t, ran, "fn must not run")
}

func TestWithTransaction_CommitsOrAborts(t *testing.T) {
	ctx := context.Background()
	r, db := articles(t)
	ok, err := docrepo.SupportsTransactions(ctx, db.Client())
	require.NoError(t, err)
	if !ok {
		t.Skip("the server has no transactions (FerretDB, or a standalone MongoDB): the commit and abort paths need a replica set; TestWithTransaction_UnsupportedDeploymentReturnsErrBeforeRunningFn checks the refusal")
	}
	// A collection cannot be created inside a transaction on older servers.
	require.NoError(t, r.Insert(ctx, &article{Title: "exists"}))

	committed := article{Title: "committed"}
	require.NoError(t, docrepo.WithTransaction(ctx, db.Client(), func(ctx context.Context) error {
		return r.Insert(ctx, &committed)
	}))
	_, err = r.Get(ctx, committed.ID)
	assert.NoError(t, err)

	boom := errors.New("boom")
	aborted := article{Title: "aborted"}
	err = docrepo.WithTransaction(ctx, db.Client(), func(ctx context.Context) error {
		require.NoError(t, r.Insert(ctx, &aborted))
		return boom
	})
	assert.ErrorIs(t, err, boom)
	_, err = r.Get(ctx, aborted.ID)
	assert.ErrorIs(t, err, docrepo.ErrNotFound, "the insert was rolled back")
}

func TestWithTransaction_NilClientReturnsErrInvalid(t *testing.T) {
	err := docrepo.WithTransaction(context.Background(), nil, func(context.Context) error { return nil })
	assert.ErrorIs(t, err, docrepo.ErrInvalid)
}
