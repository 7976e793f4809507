// Command goworker is the Go front end of the fleet tests: one
// jwtwarden.Verifier, driven by the line protocol of tests/fleet/README.md.
//
//	goworker CONFIG_FILE
//
// Prints "ready <pid>", then answers one line per command on stdin:
//
//	verify <token>          -> ok | err <kind>
//	revoke <issuer> <jti>   -> <local|fleet|pending> <unix_ns returned> | err <kind>
//	watch <token>           -> revoked <unix_ns seen> | err <kind> <unix_ns> | timeout
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

const (
	watchLimit = 20 * time.Second
	// One check per millisecond: see WATCH_PAUSE_S in worker.py.
	watchPause = time.Millisecond
)

// kindOf is the stable kind name of err ("revoked", ...).
func kindOf(err error) string {
	var e *jwtwarden.Error
	if errors.As(err, &e) {
		return e.Kind.String()
	}
	return "internal"
}

func check(v *jwtwarden.Verifier, token string) string {
	if _, err := v.Verify(token); err != nil {
		return "err " + kindOf(err)
	}
	return "ok"
}

func watch(v *jwtwarden.Verifier, token string) string {
	deadline := time.Now().Add(watchLimit)
	for time.Now().Before(deadline) {
		if r := check(v, token); r != "ok" {
			// time.Now().UnixNano() is CLOCK_REALTIME, comparable across processes.
			seen := time.Now().UnixNano()
			if r == "err revoked" {
				return fmt.Sprintf("revoked %d", seen)
			}
			return fmt.Sprintf("%s %d", r, seen)
		}
		time.Sleep(watchPause)
	}
	return "timeout"
}

func revoke(v *jwtwarden.Verifier, args string) string {
	issuer, jti, ok := strings.Cut(args, " ")
	if !ok {
		return "err usage"
	}
	p, err := v.RevokeJTI(issuer, jti, time.Time{})
	returned := time.Now().UnixNano()
	if err != nil {
		return "err " + kindOf(err)
	}
	return fmt.Sprintf("%s %d", p, returned)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: goworker CONFIG_FILE")
		os.Exit(2)
	}
	config, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	v, err := jwtwarden.New(string(config))
	if err != nil {
		fmt.Fprintln(os.Stderr, "goworker:", err)
		os.Exit(1)
	}
	defer v.Close()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "ready %d\n", os.Getpid())
	out.Flush()

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 1<<20)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(in.Text()), " ")
		var answer string
		switch cmd {
		case "verify":
			answer = check(v, arg)
		case "watch":
			answer = watch(v, arg)
		case "revoke":
			answer = revoke(v, arg)
		case "quit":
			return
		default:
			answer = "err unknown_command " + cmd
		}
		fmt.Fprintln(out, answer)
		out.Flush()
	}
}
