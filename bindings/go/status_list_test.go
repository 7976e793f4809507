package jwtwarden_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

// Token Status List statuses come back as their kinds, and a list outside
// the allowlist is never fetched.
func TestStatusList(t *testing.T) {
	is := startIssuer(t)
	is.admin("POST", "/admin/status_lists", map[string]any{"path": "/status/1", "bits": 2, "len": 16}, nil)
	is.admin("POST", "/admin/status", map[string]any{"path": "/status/1", "idx": 1, "status": 1}, nil)
	is.admin("POST", "/admin/status", map[string]any{"path": "/status/1", "idx": 2, "status": 2}, nil)
	cfg := fmt.Sprintf(`{"issuers":[{"issuer":%q,"jwks_uri":%q,"audiences":["api"],
		"status_list":{"allowed_uris":[%q]}}],"http":{"allow_http":true}}`,
		is.URL, is.URL+"/jwks.json", is.URL+"/status")
	v, err := jwtwarden.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ref := func(path string, idx int) string {
		return is.Mint("", is.Claims(map[string]any{
			"status": map[string]any{"status_list": map[string]any{"idx": idx, "uri": is.URL + path}}}))
	}
	if _, err := v.Verify(ref("/status/1", 0)); err != nil {
		t.Fatalf("valid: %v", err)
	}
	_, err = v.Verify(ref("/status/1", 1))
	expectKind(t, "invalid", err, jwtwarden.ErrRevoked, jwtwarden.ErrCategoryPolicy)
	_, err = v.Verify(ref("/status/1", 2))
	expectKind(t, "suspended", err, jwtwarden.ErrSuspended, jwtwarden.ErrCategoryPolicy)
	_, err = v.Verify(ref("/status/1", 16))
	expectKind(t, "beyond", err, jwtwarden.ErrStatusIndexOutOfRange, jwtwarden.ErrCategoryPolicy)
	_, err = v.Verify(ref("/elsewhere/1", 0))
	expectKind(t, "not allowed", err, jwtwarden.ErrStatusURINotAllowed, jwtwarden.ErrCategoryPolicy)
	_, err = v.Verify(ref("/status/missing", 0))
	expectKind(t, "unavailable", err, jwtwarden.ErrStatusListUnavailable, jwtwarden.ErrCategoryKeysUnavailable)
	var stats struct {
		Paths map[string]int `json:"paths"`
	}
	is.admin("GET", "/admin/stats", nil, &stats)
	if stats.Paths["/elsewhere/1"] != 0 || stats.Paths["/status/1"] != 1 {
		t.Errorf("requests: %v", stats.Paths)
	}
	// Metrics per list, in the JSON snapshot and in Prometheus.
	js, err := v.MetricsJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		StatusLists []struct {
			URI      string `json:"uri"`
			Entries  int    `json:"entries"`
			Bits     int    `json:"bits"`
			Rejected int    `json:"rejected"`
		} `json:"status_lists"`
	}
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range m.StatusLists {
		if l.URI == is.URL+"/status/1" {
			found = l.Entries == 16 && l.Bits == 2 && l.Rejected == 3
		}
	}
	if !found {
		t.Errorf("status list metrics: %s", js)
	}
	if p, _ := v.Prometheus(); !strings.Contains(p, "jwtwarden_status_list_fetches_total{") {
		t.Errorf("no status list metrics in Prometheus text")
	}
}
