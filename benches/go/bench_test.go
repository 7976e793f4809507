// Package gobench compares the jwtwarden Go package with golang-jwt +
// keyfunc/v3 verifying the same RS256 tokens (about 600 bytes and 2 KB) from
// the same JWKS endpoint (a jwtwarden-testissuer on loopback). Run with
// benches/go/run, or:
//
//	cargo build --release -p jwtwarden-ffi -p jwtwarden-testissuer
//	cd benches/go && go test -run '^$' -bench . -benchmem
package gobench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

var fx struct {
	url, token string
	// tokens by size: "600B" (fx.token) and "2KB" (padded with groups).
	tokens map[string]string
}

var sizes = []string{"600B", "2KB"}

func TestMain(m *testing.M) {
	bin := os.Getenv("JWTWARDEN_TESTISSUER") // benches/go/run sets it
	if bin == "" {
		bin, _ = filepath.Abs("../../target/release/jwtwarden-testissuer")
	}
	cmd := exec.Command(bin)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "build the test issuer first:", err)
		os.Exit(1)
	}
	var banner struct{ URL, Kid string }
	line, _ := bufio.NewReader(stdout).ReadBytes('\n')
	if err := json.Unmarshal(line, &banner); err != nil {
		fmt.Fprintln(os.Stderr, "test issuer:", err)
		os.Exit(1)
	}
	fx.url = banner.URL

	// A ~600-byte RS256 service token, signed by golang-jwt with the
	// issuer's private key (the shape of the Rust and C benchmarks).
	resp, err := http.Get(fx.url + "/admin/keys/" + banner.Kid + "/private")
	if err != nil {
		panic(err)
	}
	var priv struct{ Pem string }
	_ = json.NewDecoder(resp.Body).Decode(&priv)
	resp.Body.Close()
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(priv.Pem))
	if err != nil {
		panic(err)
	}
	now := time.Now().Unix()
	sign := func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = banner.Kid
		s, err := tok.SignedString(key)
		if err != nil {
			panic(err)
		}
		return s
	}
	claims := func(groups []string) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": fx.url, "sub": "bench-user", "aud": "api", "iat": now, "nbf": now, "exp": now + 3600,
			"jti": "bench-jti-0001", "scope": "orders:read", "tenant": "acme",
		}
		if groups != nil {
			c["groups"] = groups
		}
		return c
	}
	fx.token = sign(claims(nil))
	big := fx.token
	for groups := []string{}; len(big) < 2048; {
		groups = append(groups, fmt.Sprintf("group-%03d-with-a-longish-name", len(groups)))
		big = sign(claims(groups))
	}
	fx.tokens = map[string]string{"600B": fx.token, "2KB": big}

	code := m.Run()
	stdin.Close()
	_ = cmd.Wait()
	os.Exit(code)
}

// verifierConfig is the configuration of every jwtwarden benchmark.
func verifierConfig() string {
	return fmt.Sprintf(`{"issuers":[{"issuer":%q,"jwks_uri":%q,"audiences":["api"]}],"http":{"allow_http":true}}`,
		fx.url, fx.url+"/jwks.json")
}

func newVerifier(b *testing.B) *jwtwarden.Verifier {
	v, err := jwtwarden.New(verifierConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	if _, err := v.Verify(fx.token); err != nil {
		b.Fatal(err)
	}
	return v
}

// golang-jwt with keys from keyfunc/v3 (which refreshes the JWKS in the
// background); the validation matches jwtwarden's: alg, iss, aud, exp.
func newGolangJWT(b *testing.B) (*jwt.Parser, jwt.Keyfunc) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	k, err := keyfunc.NewDefaultCtx(ctx, []string{fx.url + "/jwks.json"})
	if err != nil {
		b.Fatal(err)
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(fx.url), jwt.WithAudience("api"),
		jwt.WithExpirationRequired(), jwt.WithLeeway(30*time.Second))
	if _, err := p.Parse(fx.token, k.Keyfunc); err != nil {
		b.Fatal(err)
	}
	return p, k.Keyfunc
}

// A cache hit: the same token again (what most requests of a busy client
// are), at both token sizes.
func BenchmarkHit(b *testing.B) {
	for _, size := range sizes {
		token := fx.tokens[size]
		b.Run(size+"/jwtwarden", func(b *testing.B) {
			v := newVerifier(b)
			if _, err := v.Verify(token); err != nil { // cached from here on
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := v.Verify(token)
				if err != nil || !r.Cached {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(token)), "token-bytes")
		})
		b.Run(size+"/golang-jwt+keyfunc", func(b *testing.B) {
			p, kf := newGolangJWT(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Parse(token, kf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(token)), "token-bytes")
		})
	}
}

// The C API's cache hit, looped in C (cabi.go): the reference a Go hit is
// compared with (issue 29: a Go hit within 3x the Rust hit), timed in the
// same process as BenchmarkHit so that both see the same machine load.
func BenchmarkHitCAPI(b *testing.B) {
	for _, size := range sizes {
		token := fx.tokens[size]
		b.Run(size+"/c-api", func(b *testing.B) {
			c, err := newCVerifier(verifierConfig())
			if err != nil {
				b.Fatal(err)
			}
			defer c.close()
			if err := c.hits(token, 10); err != nil && c.hits(token, 10) != nil { // the first is the miss
				b.Fatal(err)
			}
			b.ResetTimer()
			if err := c.hits(token, b.N); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(token)), "token-bytes")
		})
	}
}

// kept holds results beyond the call, as a handler that stores the
// *Verified (in a request's context, in a struct) does.
var kept *jwtwarden.Verified

// A cache hit whose result outlives the call. BenchmarkHit's caller reads
// the result and drops it, so Verify (inlined) builds it on the caller's
// stack and allocates nothing; a result the caller keeps is built on the
// heap: one allocation, what every hit cost before (issue 29).
func BenchmarkHitKept(b *testing.B) {
	for _, size := range sizes {
		token := fx.tokens[size]
		b.Run(size+"/jwtwarden", func(b *testing.B) {
			v := newVerifier(b)
			if _, err := v.Verify(token); err != nil { // cached from here on
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := v.Verify(token)
				if err != nil || !r.Cached {
					b.Fatal(err)
				}
				kept = r
			}
			b.ReportMetric(float64(len(token)), "token-bytes")
		})
	}
}

// A cache hit and the claims a handler reads: subject, audience, scopes and
// one custom claim. jwtwarden reads them with its accessors (decoded once
// per cached result); golang-jwt decodes them with every parse.
func BenchmarkHitClaims(b *testing.B) {
	for _, size := range sizes {
		token := fx.tokens[size]
		b.Run(size+"/jwtwarden", func(b *testing.B) {
			v := newVerifier(b)
			if _, err := v.Verify(token); err != nil { // cached from here on
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := v.Verify(token)
				if err != nil || !r.Cached {
					b.Fatal(err)
				}
				tenant, _ := r.ClaimString("tenant")
				if r.Subject() != "bench-user" || len(r.Audience()) != 1 || !r.HasScope("orders:read") ||
					tenant != "acme" {
					b.Fatal("claims")
				}
			}
			b.ReportMetric(float64(len(token)), "token-bytes")
		})
		b.Run(size+"/golang-jwt+keyfunc", func(b *testing.B) {
			p, kf := newGolangJWT(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t, err := p.Parse(token, kf)
				if err != nil {
					b.Fatal(err)
				}
				c := t.Claims.(jwt.MapClaims)
				sub, _ := c.GetSubject()
				aud, _ := c.GetAudience()
				scope, _ := c["scope"].(string)
				tenant, _ := c["tenant"].(string)
				if sub != "bench-user" || len(aud) != 1 || !slices.Contains(strings.Fields(scope), "orders:read") ||
					tenant != "acme" {
					b.Fatal("claims")
				}
			}
			b.ReportMetric(float64(len(token)), "token-bytes")
		})
	}
}

// golang-jwt + keyfunc verifying the token: it has no result cache, so this
// one measurement is its side of both the hit and the miss comparisons.
func benchGolangJWT(b *testing.B) {
	p, kf := newGolangJWT(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Parse(fx.token, kf); err != nil {
			b.Fatal(err)
		}
	}
}

// A cache miss: jwtwarden checks the signature (fresh), golang-jwt always does.
func BenchmarkMiss(b *testing.B) {
	b.Run("jwtwarden", func(b *testing.B) {
		v := newVerifier(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r, err := v.VerifyWith(fx.token, jwtwarden.VerifyOptions{Fresh: true})
			if err != nil || r.Cached {
				b.Fatal(err)
			}
		}
	})
	b.Run("golang-jwt+keyfunc", benchGolangJWT)
}

// Hits from all cores at once.
func BenchmarkHitParallel(b *testing.B) {
	b.Run("jwtwarden", func(b *testing.B) {
		v := newVerifier(b)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(fx.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("golang-jwt+keyfunc", func(b *testing.B) {
		p, kf := newGolangJWT(b)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := p.Parse(fx.token, kf); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
