package coordhttp

import "context"

type whoKey struct{}

func withWho(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, whoKey{}, who)
}

func whoFrom(ctx context.Context) string {
	who, _ := ctx.Value(whoKey{}).(string)
	return who
}
