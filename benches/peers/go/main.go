// Command go-bench is the Go part of the comparison run by benches/run:
// jwtwarden through cgo (cache hit and miss) against golang-jwt with
// MicahParks/keyfunc and against lestrrat-go/jwx, on the shared token set;
// hit-path throughput with 1 and 2 goroutines; and an unknown-kid storm
// against each library that fetches keys itself. Writes JSON lines.
//
//	go-bench FIXTURE.json OUT.jsonl
//
// Timing follows benches/rust/shared.rs: warm up for a tenth of the budget
// (BENCH_SECONDS, default 1), median ns/op of >= 2 ms batches for six
// tenths, p50/p99 of single timed calls for three tenths.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	gjwt "github.com/golang-jwt/jwt/v5"
	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	xjwt "github.com/lestrrat-go/jwx/v3/jwt"
)

type tokenCase struct {
	Alg   string   `json:"alg"`
	Size  string   `json:"size"`
	Bytes int      `json:"bytes"`
	Token string   `json:"token"`
	Pool  []string `json:"pool"`
}

type fixture struct {
	Issuer   string      `json:"issuer"`
	JWKSURI  string      `json:"jwks_uri"`
	Audience string      `json:"audience"`
	Tokens   []tokenCase `json:"tokens"`
	Crowd    []string    `json:"crowd"`
}

var (
	budget = time.Second
	out    *os.File
)

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "go-bench: "+format+"\n", args...)
	os.Exit(1)
}

func must(err error) {
	if err != nil {
		fatal("a verification failed while timing: %v", err)
	}
}

type stats struct {
	iterations        int
	nsPerOp, p50, p99 float64
}

func quantile(v []int64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return float64(v[int(float64(len(v)-1)*q+0.5)])
}

// measure times op (see the package documentation).
func measure(op func() error) stats {
	var s stats
	for end := time.Now().Add(budget / 10); time.Now().Before(end); {
		must(op())
	}
	batch := 1
	for {
		t := time.Now()
		for i := 0; i < batch; i++ {
			must(op())
		}
		if time.Since(t) >= 2*time.Millisecond || batch >= 1<<30 {
			break
		}
		batch *= 2
	}
	var perOp []float64
	for end := time.Now().Add(budget * 6 / 10); time.Now().Before(end) || len(perOp) < 3; {
		t := time.Now()
		for i := 0; i < batch; i++ {
			must(op())
		}
		perOp = append(perOp, float64(time.Since(t).Nanoseconds())/float64(batch))
		s.iterations += batch
	}
	sort.Float64s(perOp)
	s.nsPerOp = perOp[len(perOp)/2]

	single := make([]int64, 0, 1<<16)
	end := time.Now().Add(budget * 3 / 10)
	for {
		t := time.Now()
		must(op())
		t2 := time.Now()
		single = append(single, t2.Sub(t).Nanoseconds())
		if (!t2.Before(end) && len(single) >= 100) || len(single) >= 2_000_000 {
			break
		}
	}
	s.iterations += len(single)
	s.p50 = quantile(single, 0.50)
	s.p99 = quantile(single, 0.99)
	return s
}

func record(r map[string]any) {
	r["language"] = "go"
	b, err := json.Marshal(r)
	if err != nil {
		fatal("%v", err)
	}
	fmt.Fprintln(out, string(b))
	fmt.Fprintln(os.Stderr, string(b))
}

func timing(library, operation string, c *tokenCase, s stats) {
	record(map[string]any{
		"library": library, "operation": operation, "alg": c.Alg, "size": c.Size,
		"token_bytes": c.Bytes, "threads": 1, "ns_per_op": s.nsPerOp, "ops_per_s": 1e9 / s.nsPerOp,
		"p50_ns": s.p50, "p99_ns": s.p99, "iterations": s.iterations,
	})
}

func skipped(library, operation, alg, reason string) {
	fmt.Fprintf(os.Stderr, "skipped: go %s %s %s: %s\n", library, operation, alg, reason)
	record(map[string]any{"library": library, "operation": operation, "alg": alg, "skipped": reason})
}

// ---- the test issuer's admin API

func admin(issuer, method, path string) map[string]any {
	req, err := http.NewRequest(method, issuer+path, strings.NewReader("{}"))
	if err != nil {
		fatal("%v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fatal("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v map[string]any
	_ = json.Unmarshal(body, &v)
	return v
}

func jwksRequests(issuer string) int {
	n, ok := admin(issuer, "GET", "/admin/stats")["jwks_requests"].(float64)
	if !ok {
		fatal("no jwks_requests in /admin/stats")
	}
	return int(n)
}

// stormToken is token with its header replaced by one naming a kid no key has.
func stormToken(token, alg, tag string, i int) string {
	header := fmt.Sprintf(`{"alg":%q,"kid":"storm-%s-%d","typ":"JWT"}`, alg, tag, i)
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + token[strings.IndexByte(token, '.'):]
}

// storm verifies storm tokens on one goroutine (stopping early after 20 s)
// while timing legit calls on this one until the storm is over, and counts
// the JWKS requests the issuer served meanwhile.
func storm(library string, f *fixture, c *tokenCase, cooldown any, note string, verify func(string) error) {
	legit := func() error { return verify(c.Token) }
	must(legit())
	saved := budget
	budget = 300 * time.Millisecond
	baseline := measure(legit)
	budget = saved

	n := 10000
	if s, err := strconv.Atoi(os.Getenv("BENCH_STORM_TOKENS")); err == nil && s > 0 {
		n = s
	}
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = stormToken(c.Token, c.Alg, library, i)
	}
	admin(f.Issuer, "POST", "/admin/reset")
	var done atomic.Bool
	var sent, accepted int
	var stormTime time.Duration
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.Now()
		for _, tok := range tokens {
			if verify(tok) == nil {
				accepted++
			}
			sent++
			if time.Since(t) > 20*time.Second {
				break
			}
		}
		stormTime = time.Since(t)
		done.Store(true)
	}()
	samples := make([]int64, 0, 1<<16)
	for !done.Load() {
		t := time.Now()
		must(legit())
		samples = append(samples, time.Since(t).Nanoseconds())
	}
	wg.Wait()
	requests := jwksRequests(f.Issuer)
	record(map[string]any{
		"library": library, "operation": "storm", "alg": c.Alg, "threads": 2,
		"storm_tokens": sent, "storm_accepted": accepted, "jwks_requests": requests,
		"requests_per_10k": float64(requests) * 10000 / float64(sent),
		"storm_ms":         float64(stormTime.Microseconds()) / 1e3, "cooldown_secs": cooldown,
		"legit_samples": len(samples), "legit_p50_ns": quantile(samples, 0.5),
		"legit_p99_ns": quantile(samples, 0.99), "baseline_p99_ns": baseline.p99, "note": note,
	})
}

// ---- the libraries

func newJwtwarden(f *fixture, cache string) *jwtwarden.Verifier {
	config := fmt.Sprintf(`{"issuers":[{"issuer":%q,"jwks_uri":%q,"audiences":[%q]}],"http":{"allow_http":true},"cache":%s}`,
		f.Issuer, f.JWKSURI, f.Audience, cache)
	v, err := jwtwarden.New(config)
	if err != nil {
		fatal("jwtwarden.New: %v", err)
	}
	return v
}

func newKeyfunc(f *fixture) keyfunc.Keyfunc {
	k, err := keyfunc.NewDefaultCtx(context.Background(), []string{f.JWKSURI})
	if err != nil {
		fatal("keyfunc: %v", err)
	}
	return k
}

// golangJWT verifies like a golang-jwt user with a keyfunc JWKS: signature,
// alg allow-list, exp (required), iss, aud.
func golangJWT(f *fixture, k keyfunc.Keyfunc, alg string) func(string) error {
	parser := gjwt.NewParser(gjwt.WithValidMethods([]string{alg}), gjwt.WithAudience(f.Audience),
		gjwt.WithIssuer(f.Issuer), gjwt.WithExpirationRequired(), gjwt.WithLeeway(30*time.Second))
	return func(token string) error {
		_, err := parser.Parse(token, k.Keyfunc)
		return err
	}
}

func newJWX(f *fixture) jwk.Set {
	ctx := context.Background()
	cache, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		fatal("jwk.NewCache: %v", err)
	}
	if err := cache.Register(ctx, f.JWKSURI); err != nil {
		fatal("jwk cache register: %v", err)
	}
	set, err := cache.CachedSet(f.JWKSURI)
	if err != nil {
		fatal("jwk cached set: %v", err)
	}
	return set
}

// jwx verifies like a jwx user with a cached JWKS: signature with the kid's
// key, exp, nbf, iss, aud.
func jwx(f *fixture, set jwk.Set) func(string) error {
	return func(token string) error {
		_, err := xjwt.Parse([]byte(token), xjwt.WithKeySet(set), xjwt.WithIssuer(f.Issuer),
			xjwt.WithAudience(f.Audience), xjwt.WithAcceptableSkew(30*time.Second))
		return err
	}
}

// throughput is calls per second of op run by n goroutines at once; op gets
// the goroutine's index and how many calls it has made before.
func throughput(n int, d time.Duration, op func(index, call int) error) float64 {
	var counting, stop atomic.Bool
	var total atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(index int) {
			defer wg.Done()
			var c int64
			calls := 0
			counted := false
			for !stop.Load() {
				for j := 0; j < 64; j++ {
					must(op(index, calls))
					calls++
				}
				if counting.Load() {
					if !counted {
						counted, c = true, 0
					}
					c += 64
				}
			}
			total.Add(c)
		}(i)
	}
	time.Sleep(d / 10)
	counting.Store(true)
	t := time.Now()
	time.Sleep(d * 9 / 10)
	stop.Store(true)
	elapsed := time.Since(t)
	wg.Wait()
	return float64(total.Load()) / elapsed.Seconds()
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go-bench FIXTURE.json OUT.jsonl")
		os.Exit(2)
	}
	if s, err := strconv.ParseFloat(os.Getenv("BENCH_SECONDS"), 64); err == nil && s > 0.05 {
		budget = time.Duration(s * float64(time.Second))
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fatal("%v", err)
	}
	var f fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		fatal("fixture: %v", err)
	}
	out, err = os.OpenFile(os.Args[2], os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fatal("%v", err)
	}
	defer out.Close()

	hits := newJwtwarden(&f, "{}")
	// Capacity 1 and a rotating pool of distinct tokens: every call is a miss.
	misses := newJwtwarden(&f, `{"capacity":1,"shards":1}`)
	kf := newKeyfunc(&f)
	set := newJWX(&f)

	for i := range f.Tokens {
		c := &f.Tokens[i]
		hit := func() error { _, err := hits.Verify(c.Token); return err }
		must(hit())
		timing("jwtwarden", "hit", c, measure(hit))
		// What a handler reads: the documented accessors, not a map.
		timing("jwtwarden", "hit+claims", c, measure(func() error {
			v, err := hits.Verify(c.Token)
			if err != nil {
				return err
			}
			tenant, _ := v.ClaimString("tenant")
			if v.Subject() == "" || len(v.Audience()) != 1 || !v.HasScope("orders:read") || tenant == "" {
				return fmt.Errorf("hit+claims: claims missing")
			}
			return nil
		}))
		next := 0
		timing("jwtwarden", "miss", c, measure(func() error {
			next = (next + 1) % len(c.Pool)
			_, err := misses.Verify(c.Pool[next])
			return err
		}))
		for _, peer := range []struct {
			name   string
			verify func(string) error
		}{
			{"golang-jwt+keyfunc", golangJWT(&f, kf, c.Alg)},
			{"jwx", jwx(&f, set)},
		} {
			if err := peer.verify(c.Token); err != nil {
				skipped(peer.name, "verify", c.Alg, "rejects the token: "+err.Error())
				continue
			}
			timing(peer.name, "verify", c, measure(func() error { return peer.verify(c.Token) }))
		}
	}

	for i := range f.Tokens {
		c := &f.Tokens[i]
		if c.Alg != "RS256" || c.Size != "600B" {
			continue
		}
		// Hit-path throughput: all goroutines on the same token, or each
		// cycling through its own half of the crowd of distinct cached
		// tokens (many users).
		for _, t := range f.Crowd {
			_, err := hits.Verify(t)
			must(err)
		}
		perThread := len(f.Crowd) / 2
		labels := []string{"same"}
		if perThread > 0 {
			labels = append(labels, fmt.Sprintf("%d per thread", perThread))
		}
		// Each configuration runs in `rounds` interleaved rounds; the median
		// round is reported.
		const rounds = 3
		type config struct {
			tokens  string
			threads int
			ops     []float64
		}
		var configs []*config
		for _, tokens := range labels {
			for _, n := range []int{1, 2} {
				configs = append(configs, &config{tokens: tokens, threads: n})
			}
		}
		for r := 0; r < rounds; r++ {
			for _, cfg := range configs {
				crowd := cfg.tokens != "same"
				cfg.ops = append(cfg.ops, throughput(cfg.threads, budget/rounds, func(index, call int) error {
					t := c.Token
					if crowd {
						t = f.Crowd[index*perThread+call%perThread]
					}
					_, err := hits.Verify(t)
					return err
				}))
			}
		}
		for _, cfg := range configs {
			sort.Float64s(cfg.ops)
			record(map[string]any{
				"library": "jwtwarden", "operation": "hit", "alg": c.Alg, "size": c.Size, "token_bytes": c.Bytes,
				"threads": cfg.threads, "tokens": cfg.tokens, "ops_per_s": cfg.ops[rounds/2], "rounds": cfg.ops,
				"gomaxprocs": runtime.GOMAXPROCS(0),
			})
		}
		// Storms: fresh instances, so earlier unknown kids do not count.
		v := newJwtwarden(&f, "{}")
		storm("jwtwarden", &f, c, 30, "default unknown_kid_cooldown_secs",
			func(t string) error { _, err := v.Verify(t); return err })
		storm("golang-jwt+keyfunc", &f, c, 300, "keyfunc.NewDefault: unknown-kid refresh rate-limited to 1 per 5 min",
			golangJWT(&f, newKeyfunc(&f), c.Alg))
		storm("jwx", &f, c, nil, "jwk.Cache/CachedSet: no refetch on an unknown kid (new keys wait for the periodic refresh)",
			jwx(&f, newJWX(&f)))
	}
}
