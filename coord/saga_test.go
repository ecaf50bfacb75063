package coord

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegister_InvalidDefinitionReturnsErrInvalid(t *testing.T) {
	act := func(context.Context, *struct{}) error { return nil }
	txAct := func(context.Context, Tx, *struct{}) error { return nil }
	type S = struct{}
	tests := []struct {
		name string
		def  *Definition[S]
	}{
		{"no name", Define[S]("", Step[S]{Name: "a", Action: act})},
		{"no steps", Define[S]("saga")},
		{"step without name", Define("saga", Step[S]{Action: act})},
		{"slash in step name", Define("saga", Step[S]{Name: "a/b", Action: act})},
		{"duplicate step names", Define("saga", Step[S]{Name: "a", Action: act}, Step[S]{Name: "a", Action: act})},
		{"no action", Define("saga", Step[S]{Name: "a"})},
		{"two actions", Define("saga", Step[S]{Name: "a", Action: act, TxAction: txAct})},
		{"two compensations", Define("saga", Step[S]{Name: "a", Action: act, Compensate: act, TxCompensate: txAct})},
		{"two pivots", Define("saga", Step[S]{Name: "a", Kind: Pivot, Action: act}, Step[S]{Name: "b", Kind: Pivot, Action: act})},
		{"retriable before pivot", Define("saga", Step[S]{Name: "a", Kind: Retriable, Action: act}, Step[S]{Name: "b", Kind: Pivot, Action: act})},
		{"retriable without pivot", Define("saga", Step[S]{Name: "a", Action: act}, Step[S]{Name: "b", Kind: Retriable, Action: act})},
		{"compensatable after pivot", Define("saga", Step[S]{Name: "a", Kind: Pivot, Action: act}, Step[S]{Name: "b", Action: act})},
		{"compensated pivot", Define("saga", Step[S]{Name: "a", Kind: Pivot, Action: act, Compensate: act})},
		{"compensated retriable", Define("saga", Step[S]{Name: "a", Kind: Pivot, Action: act}, Step[S]{Name: "b", Kind: Retriable, Action: act, Compensate: act})},
		{"unknown kind", Define("saga", Step[S]{Name: "a", Kind: Kind(7), Action: act})},
		{"nil definition", nil},
	}
	// Register checks the definition before it touches the coordinator.
	c := &Coordinator{sagas: map[string]driver{}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Register(c, tt.def)
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}

	_, err := Register(c, Define("saga", Step[S]{Name: "a", Action: act}, Step[S]{Name: "p", Kind: Pivot, TxAction: txAct}, Step[S]{Name: "r", Kind: Retriable, Action: act}))
	require.NoError(t, err)
	_, err = Register(c, Define("saga", Step[S]{Name: "a", Action: act}))
	assert.ErrorIs(t, err, ErrInvalid, "a name registers once")
}
