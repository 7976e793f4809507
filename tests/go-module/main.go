// Command go-module is a program in a module of its own, outside this
// repository, that uses the Go package the way a user's program does: it
// needs the C library installed (pkg-config) and nothing from a checkout.
// scripts/test-go copies it into a temporary module, runs `go mod tidy`,
// builds it and runs it against the test issuer:
//
//	go-module URL   # prints "ok version=... issuer=URL" and exits 0
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-module ISSUER_URL")
		os.Exit(2)
	}
	url := os.Args[1]
	config := fmt.Sprintf(`{"issuers": [{"issuer": %q, "jwks_uri": %q, "audiences": ["api"]}],
	                        "http": {"allow_http": true}}`, url, url+"/jwks.json")
	v, err := jwtwarden.New(config)
	if err != nil {
		fail(err)
	}
	defer v.Close()

	resp, err := http.Post(url+"/admin/mint", "application/json", strings.NewReader("{}"))
	if err != nil {
		fail(err)
	}
	var minted struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&minted)
	resp.Body.Close()
	if err != nil {
		fail(err)
	}

	verified, err := v.Verify(minted.Token)
	if err != nil {
		fail(err)
	}
	tampered := minted.Token[:len(minted.Token)-6] + "AAAAAA"
	if tampered == minted.Token {
		tampered = minted.Token[:len(minted.Token)-6] + "BBBBBA"
	}
	if _, err := v.Verify(tampered); !errors.Is(err, jwtwarden.ErrInvalidSignature) {
		fail(fmt.Errorf("tampered token: got %v, want invalid_signature", err))
	}
	fmt.Printf("ok version=%s issuer=%s\n", jwtwarden.Version(), verified.Issuer)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go-module:", err)
	os.Exit(1)
}
