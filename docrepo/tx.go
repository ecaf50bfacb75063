package docrepo

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// SupportsTransactions reports whether client's deployment runs
// multi-document transactions: a replica set (hello names a setName) or a
// sharded cluster (hello's msg is "isdbgrid"). A standalone server and
// FerretDB do not. Errors: ErrInvalid (nil client), or the driver's error
// from hello, wrapped.
func SupportsTransactions(ctx context.Context, client *mongo.Client) (bool, error) {
	if client == nil {
		return false, invalidf("nil client")
	}
	var hello struct {
		SetName string `bson:"setName"`
		Msg     string `bson:"msg"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return false, translate("hello", err)
	}
	return hello.SetName != "" || hello.Msg == "isdbgrid", nil
}

// WithTransaction runs fn in a transaction on a new session of client and
// commits it when fn returns nil, or aborts it and returns fn's error.
// Operations join the transaction through the context fn is given: pass
// it to every repository call. The driver retries the whole of fn on a
// transient transaction error and retries the commit on an unknown commit
// result (up to 120 seconds), so fn must be safe to run again. Where the
// deployment has no transactions (see SupportsTransactions), WithTransaction
// returns ErrTransactionsUnsupported without running fn. Errors: fn's error,
// ErrTransactionsUnsupported, ErrInvalid (nil client or nil fn, before
// anything starts), or the driver's error (a failed commit), wrapped.
func WithTransaction(ctx context.Context, client *mongo.Client, fn func(ctx context.Context) error) error {
	if fn == nil {
		return invalidf("transaction: nil fn")
	}
	ok, err := SupportsTransactions(ctx, client)
	if err != nil {
		return fmt.Errorf("docrepo: transaction: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: the server is neither a replica set nor a sharded cluster", ErrTransactionsUnsupported)
	}
	sess, err := client.StartSession()
	if err != nil {
		return translate("start session", err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		return nil, fn(ctx)
	})
	return err
}
