package jwtwarden_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

func TestVersion(t *testing.T) {
	if jwtwarden.Version() != jwtwarden.HeaderVersion {
		t.Errorf("library %s, header %s", jwtwarden.Version(), jwtwarden.HeaderVersion)
	}
}

func TestVerifyCacheFreshAndExplicitIssuer(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	token := is.Mint("", is.Claims(nil))

	first, err := v.Verify(token)
	if err != nil || first.Cached {
		t.Fatalf("first: %+v %v", first, err)
	}
	second, err := v.Verify(token)
	if err != nil || !second.Cached {
		t.Fatalf("second: %+v %v", second, err)
	}
	fresh, err := v.VerifyWith(token, jwtwarden.VerifyOptions{Fresh: true})
	if err != nil || fresh.Cached {
		t.Fatalf("fresh: %+v %v", fresh, err)
	}
	if _, err := v.VerifyWith(token, jwtwarden.VerifyOptions{Issuer: is.URL}); err != nil {
		t.Fatalf("explicit issuer: %v", err)
	}
	if _, err := v.VerifyWith(token, jwtwarden.VerifyOptions{Issuer: "https://other.example"}); !errors.Is(err, jwtwarden.ErrUnknownIssuer) {
		t.Fatalf("unconfigured explicit issuer: %v", err)
	}
}

// expectKind checks err is an *Error of kind want in category cat.
func expectKind(t *testing.T, what string, err error, want jwtwarden.Kind, cat jwtwarden.Category) {
	t.Helper()
	var e *jwtwarden.Error
	if !errors.As(err, &e) {
		t.Errorf("%s: got %v, want %s", what, err, want)
		return
	}
	if !errors.Is(err, want) || !errors.Is(err, cat) || e.Kind != want || e.Code != uint32(want) || e.Category != cat {
		t.Errorf("%s: got %s (%d, %s), want %s (%s)", what, e.Kind, e.Code, e.Category, want, cat)
	}
	if e.Message == "" {
		t.Errorf("%s: empty message", what)
	}
}

func TestEveryRejection(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	good := is.Mint("", is.Claims(nil))
	now := time.Now().Unix()

	// A key the issuer never published: its tokens have an unknown kid.
	kidOther := is.AddKey("RS256")
	unknown := is.Mint(kidOther, is.Claims(nil))
	is.RetireKey(kidOther)

	// Same kid, tampered signature: one character replaced by another of the
	// base64url alphabet (flipping a bit of 'Z', 'z', '-' or '_' leaves the
	// alphabet, and the token is then malformed, not badly signed).
	parts := strings.Split(good, ".")
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	badSig := parts[0] + "." + parts[1] + "." + string(sig)

	cases := []struct {
		name  string
		token string
		kind  jwtwarden.Kind
		cat   jwtwarden.Category
	}{
		{"empty", "", jwtwarden.ErrMalformedToken, jwtwarden.ErrCategoryMalformed},
		{"not a jwt", "hello", jwtwarden.ErrMalformedToken, jwtwarden.ErrCategoryMalformed},
		{"bad base64", "!!!.e30.c2ln", jwtwarden.ErrInvalidBase64, jwtwarden.ErrCategoryMalformed},
		{"alg none", "eyJhbGciOiJub25lIn0.e30.c2ln", jwtwarden.ErrAlgorithmNotAllowed, jwtwarden.ErrCategoryMalformed},
		{"too large", strings.Repeat("a", 20000), jwtwarden.ErrTokenTooLarge, jwtwarden.ErrCategoryMalformed},
		{"bad signature", badSig, jwtwarden.ErrInvalidSignature, jwtwarden.ErrCategoryVerification},
		{"unknown kid", unknown, jwtwarden.ErrUnknownKid, jwtwarden.ErrCategoryVerification},
		{"expired", is.Mint("", is.Claims(map[string]any{"exp": now - 3600})), jwtwarden.ErrExpired, jwtwarden.ErrCategoryPolicy},
		{"not yet valid", is.Mint("", is.Claims(map[string]any{"nbf": now + 3600})), jwtwarden.ErrNotYetValid, jwtwarden.ErrCategoryPolicy},
		{"audience", is.Mint("", is.Claims(map[string]any{"aud": "someone-else"})), jwtwarden.ErrInvalidAudience, jwtwarden.ErrCategoryPolicy},
		{"unknown issuer", is.Mint("", is.Claims(map[string]any{"iss": "https://evil.example"})), jwtwarden.ErrUnknownIssuer, jwtwarden.ErrCategoryPolicy},
	}
	for _, c := range cases {
		_, err := v.Verify(c.token)
		expectKind(t, c.name, err, c.kind, c.cat)
	}
	// Verified for a named issuer, the token's iss must match.
	other := is.Mint("", is.Claims(map[string]any{"iss": "https://evil.example"}))
	_, err := v.VerifyWith(other, jwtwarden.VerifyOptions{Issuer: is.URL})
	expectKind(t, "invalid issuer", err, jwtwarden.ErrInvalidIssuer, jwtwarden.ErrCategoryPolicy)

	var e *jwtwarden.Error
	if _, err := v.Verify(badSig); !errors.As(err, &e) || !e.IsVerificationFailure() || e.IsPolicyDenial() {
		t.Errorf("predicates: %v", err)
	}
	if _, err := v.Verify(good); err != nil {
		t.Errorf("good token after the rejections: %v", err)
	}
}

func TestKeysUnavailable(t *testing.T) {
	is := startIssuer(t)
	cfg := `{"issuers":[{"issuer":"https://down.example","jwks_uri":"http://127.0.0.1:1/jwks.json","audiences":["api"]}],
		"http":{"allow_http":true,"connect_timeout_ms":500,"timeout_ms":1000}}`
	v, err := jwtwarden.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, err = v.Verify(is.Mint("", is.Claims(map[string]any{"iss": "https://down.example"})))
	expectKind(t, "keys unavailable", err, jwtwarden.ErrKeysUnavailable, jwtwarden.ErrCategoryKeysUnavailable)
	if h, err := v.IssuerHealth("https://down.example"); err != nil || h != jwtwarden.HealthFailedClosed {
		t.Errorf("health %s %v", h, err)
	}
	expectKind(t, "refresh", v.RefreshIssuer("https://down.example"), jwtwarden.ErrKeysUnavailable, jwtwarden.ErrCategoryKeysUnavailable)
}

func TestRevocation(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	if state, err := v.RevocationFeedState(); err != nil || state != jwtwarden.FeedNone || state.String() != "none" {
		t.Fatalf("feed state without revocation.redis: %v %v", state, err)
	}
	exp := time.Now().Add(time.Hour)

	byJTI := is.Mint("", is.Claims(map[string]any{"jti": "go-jti-1", "exp": exp.Unix()}))
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(byJTI); err != nil {
			t.Fatal(err)
		}
	}
	// Without revocation.redis a revocation reaches this process only.
	if p, err := v.RevokeJTI(is.URL, "go-jti-1", exp); err != nil || p != jwtwarden.PropagationLocal {
		t.Fatalf("RevokeJTI: %s %v", p, err)
	}
	_, err := v.Verify(byJTI)
	expectKind(t, "revoked jti", err, jwtwarden.ErrRevoked, jwtwarden.ErrCategoryPolicy)

	bySub := is.Mint("", is.Claims(map[string]any{"sub": "mallory"}))
	if _, err := v.Verify(bySub); err != nil {
		t.Fatal(err)
	}
	if p, err := v.RevokeSubject(is.URL, "mallory", time.Now().Add(time.Second)); err != nil || p != jwtwarden.PropagationLocal {
		t.Fatalf("RevokeSubject: %s %v", p, err)
	}
	_, err = v.Verify(bySub)
	expectKind(t, "revoked subject", err, jwtwarden.ErrRevoked, jwtwarden.ErrCategoryPolicy)

	plain := is.Mint("", is.Claims(nil))
	if _, err := v.Verify(plain); err != nil {
		t.Fatal(err)
	}
	if n, err := v.BumpPolicyVersion(); err != nil || n != 1 {
		t.Fatalf("bump: %d %v", n, err)
	}
	if got, err := v.Verify(plain); err != nil || got.Cached {
		t.Fatalf("after bump: %+v %v", got, err)
	}
	if p, err := v.RevokeKID(is.URL, is.Kid); err != nil || p != jwtwarden.PropagationLocal {
		t.Fatalf("RevokeKID: %s %v", p, err)
	}
	_, err = v.Verify(plain)
	expectKind(t, "revoked kid", err, jwtwarden.ErrKeyRevoked, jwtwarden.ErrCategoryPolicy)
	_, err = v.RevokeKID("https://nope.example", "k")
	expectKind(t, "revoke kid of unknown issuer", err, jwtwarden.ErrUnknownIssuer, jwtwarden.ErrCategoryPolicy)
	_, err = v.RevokeKID(is.URL, "")
	expectKind(t, "empty kid", err, jwtwarden.ErrInvalidArgument, jwtwarden.ErrCategoryUsage)
	_, err = v.RevokeJTI(is.URL, "", time.Time{})
	expectKind(t, "empty jti", err, jwtwarden.ErrInvalidArgument, jwtwarden.ErrCategoryUsage)
}

// A jti or sub is unique only within its issuer: a revocation for one
// issuer leaves another issuer's token with the same jti or sub alone;
// AnyIssuer reaches every issuer; an unconfigured issuer is refused.
func TestRevocationIsIssuerScoped(t *testing.T) {
	a, b := startIssuer(t), startIssuer(t)
	cfg := fmt.Sprintf(`{"issuers":[{"issuer":%q,"jwks_uri":%q,"audiences":["api"]},
		{"issuer":%q,"jwks_uri":%q,"audiences":["api"]}],"http":{"allow_http":true}}`,
		a.URL, a.URL+"/jwks.json", b.URL, b.URL+"/jwks.json")
	v, err := jwtwarden.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	verify := func(what, token string, want jwtwarden.Kind) {
		t.Helper()
		_, err := v.Verify(token)
		if want == 0 {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
			return
		}
		expectKind(t, what, err, want, want.Category())
	}

	same := map[string]any{"jti": "go-shared-jti", "sub": "carol"}
	aTok, bTok := a.Mint("", a.Claims(same)), b.Mint("", b.Claims(same))
	verify("A before", aTok, 0)
	verify("B before", bTok, 0)
	if p, err := v.RevokeJTI(a.URL, "go-shared-jti", time.Time{}); err != nil || p != jwtwarden.PropagationLocal {
		t.Fatalf("RevokeJTI A: %s %v", p, err)
	}
	verify("A's jti revoked", aTok, jwtwarden.ErrRevoked)
	verify("B's token with the same jti", bTok, 0)

	if _, err := v.RevokeSubject(b.URL, "carol", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	verify("B's subject revoked", bTok, jwtwarden.ErrRevoked)
	aSub := a.Mint("", a.Claims(map[string]any{"sub": "carol"}))
	verify("A's token for the same subject", aSub, 0)

	for what, err := range map[string]error{
		"jti":     second(v.RevokeJTI("https://nope.example", "j", time.Time{})),
		"subject": second(v.RevokeSubject("https://nope.example", "s", time.Now())),
		"kid":     second(v.RevokeKID("https://nope.example", "k")),
		"empty":   second(v.RevokeJTI("", "j", time.Time{})),
	} {
		expectKind(t, "unconfigured issuer, "+what, err, jwtwarden.ErrUnknownIssuer, jwtwarden.ErrCategoryPolicy)
	}

	every := map[string]any{"jti": "go-everywhere"}
	aAny, bAny := a.Mint("", a.Claims(every)), b.Mint("", b.Claims(every))
	verify("A before *", aAny, 0)
	verify("B before *", bAny, 0)
	if p, err := v.RevokeJTI(jwtwarden.AnyIssuer, "go-everywhere", time.Now().Add(time.Hour)); err != nil || p != jwtwarden.PropagationLocal {
		t.Fatalf("RevokeJTI *: %s %v", p, err)
	}
	verify("A after *", aAny, jwtwarden.ErrRevoked)
	verify("B after *", bAny, jwtwarden.ErrRevoked)
}

func second(_ jwtwarden.Propagation, err error) error { return err }

func TestPropagationString(t *testing.T) {
	for p, want := range map[jwtwarden.Propagation]string{
		jwtwarden.PropagationLocal:   "local",
		jwtwarden.PropagationFleet:   "fleet",
		jwtwarden.PropagationPending: "pending",
		jwtwarden.Propagation(9):     "Propagation(9)",
	} {
		if got := p.String(); got != want {
			t.Errorf("%d: %q, want %q", uint32(p), got, want)
		}
	}
	if jwtwarden.PropagationLocal != 0 || jwtwarden.PropagationFleet != 1 || jwtwarden.PropagationPending != 2 {
		t.Error("numbers differ from jwtwarden.h")
	}
	if jwtwarden.AnyIssuer != "*" {
		t.Error("AnyIssuer")
	}
}

func TestRefreshIssuerAndHealth(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	if h, err := v.IssuerHealth(is.URL); err != nil || h != jwtwarden.HealthFresh || h.String() != "fresh" {
		t.Fatalf("health %s %v", h, err)
	}
	kid := is.AddKey("ES256")
	before := is.JWKSRequests()
	if err := v.RefreshIssuer(is.URL); err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(is.Mint(kid, is.Claims(nil)))
	if err != nil || got.Kid != kid || got.Alg != "ES256" {
		t.Fatalf("ES256 after refresh: %+v %v", got, err)
	}
	if n := is.JWKSRequests(); n != before+1 {
		t.Errorf("JWKS requests %d, want %d", n, before+1)
	}
	expectKind(t, "refresh unknown issuer", v.RefreshIssuer("https://nope.example"), jwtwarden.ErrUnknownIssuer, jwtwarden.ErrCategoryPolicy)
}

func TestMetrics(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	token := is.Mint("", is.Claims(nil))
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(token); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = v.Verify("garbage")
	raw, err := v.MetricsJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Verifications struct {
			OkFresh  uint64            `json:"ok_fresh"`
			OkCached uint64            `json:"ok_cached"`
			Rejected map[string]uint64 `json:"rejected"`
		}
		Cache struct{ Hits uint64 }
	}
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	if m.Verifications.OkFresh != 1 || m.Verifications.OkCached != 2 || m.Cache.Hits != 2 ||
		m.Verifications.Rejected["malformed_token"] != 1 {
		t.Errorf("metrics: %s", raw)
	}
	text, err := v.Prometheus()
	if err != nil || !strings.Contains(text, "# TYPE jwtwarden_verifications") {
		t.Errorf("prometheus: %v\n%s", err, text)
	}
}

func TestCloseIsIdempotentAndLaterCallsFail(t *testing.T) {
	is := startIssuer(t)
	v, err := jwtwarden.New(is.Config())
	if err != nil {
		t.Fatal(err)
	}
	token := is.Mint("", is.Claims(nil))
	if _, err := v.Verify(token); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(token)
	expectKind(t, "verify after close", err, jwtwarden.ErrInvalidArgument, jwtwarden.ErrCategoryUsage)
	_, err = v.MetricsJSON()
	expectKind(t, "metrics after close", err, jwtwarden.ErrInvalidArgument, jwtwarden.ErrCategoryUsage)
}

// Goroutines verify while a key rotates. Phases: 0, A only; 1, A and B (B
// found by one coalesced unknown-kid fetch); 2, A being retired (results not
// checked); 3, A retired and the verifier refreshed: A fails, B verifies. A
// goroutine checks a result only if the phase did not change during the
// call, and the main goroutine moves on only after every goroutine verified
// in the current phase.
func TestConcurrentVerifyDuringRotation(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	tokenA := is.Mint("", is.Claims(nil))
	const workers = 8
	perPhase := int64(100)
	if testing.Short() {
		perPhase = 10
	}

	var phase atomic.Int32
	var tokenB atomic.Pointer[string]
	var stop atomic.Bool
	var progress [workers][4]atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for !stop.Load() {
				before := phase.Load()
				_, errA := v.Verify(tokenA)
				var errB error
				if b := tokenB.Load(); b != nil {
					_, errB = v.Verify(*b)
				}
				if phase.Load() != before || before == 2 {
					continue
				}
				okA := errA == nil
				if before == 3 {
					okA = errors.Is(errA, jwtwarden.ErrUnknownKid)
				}
				if !okA || (before >= 1 && errB != nil) {
					if failures.Add(1) <= 5 {
						t.Errorf("worker %d phase %d: A=%v B=%v", w, before, errA, errB)
					}
				}
				progress[w][before].Add(1)
			}
		}(w)
	}
	waitPhase := func(p int) {
		for w := 0; w < workers; w++ {
			for progress[w][p].Load() < perPhase && failures.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	waitPhase(0)
	kidB := is.AddKey("ES256")
	b := is.Mint(kidB, is.Claims(nil))
	tokenB.Store(&b)
	phase.Store(1)
	waitPhase(1)
	phase.Store(2)
	is.RetireKey(is.Kid)
	if err := v.RefreshIssuer(is.URL); err != nil {
		t.Fatal(err)
	}
	phase.Store(3)
	waitPhase(3)
	stop.Store(true)
	wg.Wait()

	raw, _ := v.MetricsJSON()
	var m struct {
		Issuers []struct {
			Fetches map[string]int `json:"fetches"`
		}
	}
	if err := json.Unmarshal([]byte(raw), &m); err != nil || len(m.Issuers) != 1 {
		t.Fatalf("metrics %v: %s", err, raw)
	}
	if n := m.Issuers[0].Fetches["unknown_kid"]; n != 1 {
		t.Errorf("unknown-kid fetches: %d, want 1 (coalesced)", n)
	}
}

func TestInvalidConfigNamesTheField(t *testing.T) {
	for cfg, field := range map[string]string{
		`{}`:                  "issuers",
		`{"issuers": "nope"}`: "issuers",
		`{"issuers": [{"issuer": "https://a.example", "jwks_uri": "https://a.example/j"}]}`:                                  "audiences",
		`{"issuers": [{"issuer": "https://a.example", "jwks_uri": "https://a.example/j", "audiences": ["x"], "leeway": 1}]}`: "leeway",
	} {
		_, err := jwtwarden.New(cfg)
		var e *jwtwarden.Error
		if !errors.As(err, &e) || e.Kind != jwtwarden.ErrInvalidConfig || !strings.Contains(e.Message, field) {
			t.Errorf("%s: %v (want a message naming %s)", cfg, err, field)
		}
	}
}

func ExampleVerifier_Verify() {
	// (The JWKS endpoint here is unreachable: New still succeeds, and tokens
	// of that issuer fail closed with ErrKeysUnavailable until keys arrive.)
	v, err := jwtwarden.New(`{"issuers": [{"issuer": "https://idp.example.com",
		"jwks_uri": "http://127.0.0.1:1/jwks.json", "audiences": ["api"]}],
		"http": {"allow_http": true, "timeout_ms": 500}}`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer v.Close()
	_, err = v.Verify("not-a-token")
	fmt.Println(errors.Is(err, jwtwarden.ErrCategoryMalformed))
	// Output: true
}
