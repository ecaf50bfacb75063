package main

import (
	"flag"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig_DefaultsNeedNoSetting(t *testing.T) {
	c, err := loadConfig(nil, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", c.Addr)
	assert.Equal(t, "redis://127.0.0.1:6379/0", c.RedisURL)
	assert.Equal(t, 100, c.RateLimit)
	assert.Equal(t, slog.LevelInfo, c.LogLevel)
	assert.Equal(t, 30*time.Minute, c.SessionIdle)
	assert.Equal(t, 24*time.Hour, c.SessionLifetime)
	assert.Equal(t, 15*time.Minute, c.LoginWindow)
	assert.Equal(t, 10, c.LoginPerAccount)
	assert.Equal(t, 50, c.LoginPerClient)
}

func TestLoadConfig_SessionAndLoginSettingsFromTheEnvironment(t *testing.T) {
	c, err := loadConfig(nil, env(map[string]string{
		"SESSION_IDLE_TIMEOUT": "5m", "SESSION_LIFETIME": "2h", "LOGIN_WINDOW": "1m",
		"LOGIN_FAILURES_PER_ACCOUNT": "3", "LOGIN_FAILURES_PER_CLIENT": "20",
	}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Minute, c.SessionIdle)
	assert.Equal(t, 2*time.Hour, c.SessionLifetime)
	assert.Equal(t, time.Minute, c.LoginWindow)
	assert.Equal(t, 3, c.LoginPerAccount)
	assert.Equal(t, 20, c.LoginPerClient)
}

func TestLoadConfig_FlagBeatsEnvBeatsDefault(t *testing.T) {
	c, err := loadConfig([]string{"-addr", ":9000", "-cache-disabled"},
		env(map[string]string{"ADDR": ":7000", "POSTGRES_URL": "postgres://x/y", "CACHE_TTL": "1m", "LOG_LEVEL": "debug"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, ":9000", c.Addr)
	assert.Equal(t, "postgres://x/y", c.PostgresURL)
	assert.Equal(t, time.Minute, c.CacheTTL)
	assert.True(t, c.CacheDisabled)
	assert.Equal(t, slog.LevelDebug, c.LogLevel)
}

func TestLoadConfig_MalformedValuesAreErrorsNamingThem(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"env int", nil, map[string]string{"RATE_LIMIT": "lots"}, "RATE_LIMIT"},
		{"env duration", nil, map[string]string{"READ_TIMEOUT": "10"}, "READ_TIMEOUT"},
		{"env bool", nil, map[string]string{"CACHE_DISABLED": "maybe"}, "CACHE_DISABLED"},
		{"flag", []string{"-rate-burst", "x"}, nil, "rate-burst"},
		{"log level", []string{"-log-level", "loud"}, nil, "loud"},
		{"log format", []string{"-log-format", "xml"}, nil, "xml"},
		{"stray argument", []string{"serve"}, nil, "serve"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(tt.args, env(tt.env), io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLoadConfig_EachFlagsUsageNamesTheVariableItReads(t *testing.T) {
	var usage strings.Builder
	_, err := loadConfig([]string{"-h"}, env(nil), &usage)
	require.ErrorIs(t, err, flag.ErrHelp)
	flags := regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatchIndex(usage.String(), -1)
	require.NotEmpty(t, flags)
	for i, m := range flags {
		end := len(usage.String())
		if i+1 < len(flags) {
			end = flags[i+1][0]
		}
		name := usage.String()[m[2]:m[3]]
		variable := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		assert.Contains(t, usage.String()[m[0]:end], "("+variable+")", "-%s", name)
	}
}
