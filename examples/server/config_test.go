package main

import (
	"bytes"
	"encoding/base64"
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

func TestLoadConfig_RecoveryLoopAndSagaLeaseFromTheEnvironment(t *testing.T) {
	c, err := loadConfig(nil, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Zero(t, c.RecoverEvery, "coord's default")
	assert.Zero(t, c.SagaLease, "coord's default")

	c, err = loadConfig(nil, env(map[string]string{"RECOVER_EVERY": "1s", "SAGA_LEASE": "3s"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, time.Second, c.RecoverEvery)
	assert.Equal(t, 3*time.Second, c.SagaLease)
}

func TestLoadConfig_RequestTimeoutFromTheEnvironment(t *testing.T) {
	c, err := loadConfig(nil, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, c.RequestTimeout)

	c, err = loadConfig(nil, env(map[string]string{"REQUEST_TIMEOUT": "1500ms"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 1500*time.Millisecond, c.RequestTimeout)

	c, err = loadConfig([]string{"-request-timeout", "0"}, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, c.RequestTimeout, "0 is the default, for the stores' connect timeouts too")

	c, err = loadConfig(nil, env(map[string]string{"REQUEST_TIMEOUT": "-1s"}), io.Discard)
	require.NoError(t, err)
	assert.Negative(t, c.RequestTimeout, "negative: no deadline")
}

func key32(b byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

func TestLoadConfig_SagaKeysAndAdminConsoleFromTheEnvironment(t *testing.T) {
	c, err := loadConfig(nil, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Empty(t, c.SagaKeys, "unsealed by default")
	assert.Empty(t, c.AdminToken, "no console by default")

	c, err = loadConfig(nil, env(map[string]string{
		"SAGA_KEYS": "2026-10:" + key32(1) + ", 2026-11:" + key32(2), "ADMIN_TOKEN": "s3cret", "ADMIN_READONLY": "true",
	}), io.Discard)
	require.NoError(t, err)
	require.Len(t, c.SagaKeys, 2)
	assert.Equal(t, "2026-10", c.SagaKeys[0].ID)
	assert.Equal(t, "2026-11", c.SagaKeys[1].ID, "the last seals")
	assert.Equal(t, bytes.Repeat([]byte{2}, 32), c.SagaKeys[1].Secret)
	assert.Equal(t, "s3cret", c.AdminToken)
	assert.True(t, c.AdminReadOnly)
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
		{"saga key without id", nil, map[string]string{"SAGA_KEYS": strings.Repeat("A", 43) + "="}, "SAGA_KEYS: key 1"},
		{"saga key not base64", nil, map[string]string{"SAGA_KEYS": "k1:not base64"}, `SAGA_KEYS: key "k1"`},
		{"saga key of 16 bytes", nil, map[string]string{"SAGA_KEYS": "k1:" + base64.StdEncoding.EncodeToString(make([]byte, 16))}, `SAGA_KEYS: key "k1"`},
		{"saga key id twice", nil, map[string]string{"SAGA_KEYS": "k1:" + key32(1) + ",k1:" + key32(2)}, "SAGA_KEYS"},
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
