package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/otel/trace"

	"github.com/polystore/polystore/examples/server/internal/server"
)

func TestWithTraceIDs_AddsTheSpanIdsOfTheContextOnly(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x0a, 0xf7, 15: 0x01}, SpanID: trace.SpanID{0xb7, 7: 0x02},
	})
	withSpan := trace.ContextWithSpanContext(context.Background(), sc)
	tests := []struct {
		name string
		ctx  context.Context
		log  func(*slog.Logger, context.Context)
		want string
	}{
		{"a span", withSpan, func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "m") },
			"level=INFO msg=m trace_id=0af70000000000000000000000000001 span_id=b700000000000002\n"},
		{"no span", context.Background(), func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "m") },
			"level=INFO msg=m\n"},
		{"attributes first", withSpan, func(l *slog.Logger, ctx context.Context) { l.With("k", 1).InfoContext(ctx, "m", "x", 2) },
			"level=INFO msg=m k=1 x=2 trace_id=0af70000000000000000000000000001 span_id=b700000000000002\n"},
		{"in a group", withSpan, func(l *slog.Logger, ctx context.Context) { l.WithGroup("g").InfoContext(ctx, "m") },
			"level=INFO msg=m g.trace_id=0af70000000000000000000000000001 g.span_id=b700000000000002\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(server.WithTraceIDs(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			})))
			tt.log(l, tt.ctx)
			assert.Equal(t, tt.want, buf.String())
		})
	}
}
