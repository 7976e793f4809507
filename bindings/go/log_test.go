package jwtwarden_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

func TestLoggerReceivesRejectionsWithoutTheToken(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	var mu sync.Mutex
	var lines []string
	err := jwtwarden.SetLogger(func(level jwtwarden.LogLevel, msg string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, level.String()+" "+msg)
	}, jwtwarden.LogDebug)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = jwtwarden.SetLogger(nil, jwtwarden.LogOff) }()

	token := is.Mint("", is.Claims(map[string]any{"aud": "nope"}))
	if _, err := v.Verify(token); !errors.Is(err, jwtwarden.ErrInvalidAudience) {
		t.Fatal(err)
	}
	mu.Lock()
	found := false
	for _, l := range lines {
		if strings.HasPrefix(l, "debug ") && strings.Contains(l, "rejected token") {
			found = true
		}
		if strings.Contains(l, token) {
			t.Errorf("a log line contains the whole token: %s", l)
		}
	}
	n := len(lines)
	mu.Unlock()
	if !found {
		t.Errorf("no debug rejection line in %q", lines)
	}

	if err := jwtwarden.SetLogger(nil, jwtwarden.LogOff); err != nil {
		t.Fatal(err)
	}
	_, _ = v.Verify(token)
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != n {
		t.Errorf("logged after SetLogger(nil): %q", lines[n:])
	}
	if err := jwtwarden.SetLogger(func(jwtwarden.LogLevel, string) {}, 42); !errors.Is(err, jwtwarden.ErrInvalidArgument) {
		t.Errorf("bad level: %v", err)
	}
}

func TestPanickingLoggerDoesNotCrash(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	if err := jwtwarden.SetLogger(func(jwtwarden.LogLevel, string) { panic("boom") }, jwtwarden.LogDebug); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = jwtwarden.SetLogger(nil, jwtwarden.LogOff) }()
	if _, err := v.Verify("garbage"); !errors.Is(err, jwtwarden.ErrMalformedToken) {
		t.Fatal(err)
	}
}
