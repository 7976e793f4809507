"""Turn benches/webservers/run's records into Markdown.

Usage: python3 report.py RESULTS.jsonl OUT.md [benches/RESULTS.md]

Writes the section to OUT.md and, given RESULTS.md, replaces the text
between its webservers markers with it (or inserts the section, markers
included, before "## Not measured", or at the end).
"""

from __future__ import annotations

import json
import sys

BEGIN = "<!-- webservers: begin (benches/webservers/run) -->"
END = "<!-- webservers: end -->"


def ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def pct(a: float, b: float) -> str:
    return f"{100 * a / b:.0f} %" if b else "n/a"


def cpu_us(r: dict) -> str:
    """The server processes' CPU time per request in the round."""
    return f"{r['server_cpu_ticks'] / r['clk_tck'] * 1e6 / r['requests']:.1f} µs"


def statuses(d: dict) -> str:
    s = d.get("status") or {}
    return ", ".join(f"{v:,} × {k}" for k, v in sorted(s.items())) or "none"


def main() -> None:
    records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    machine = next(r for r in records if r["kind"] == "machine")
    rounds = [r for r in records if r["kind"] == "round"]
    scenarios = [r for r in records if r["kind"] == "scenario"]

    # Each case's best round (the highest rate): interference only slows.
    cases: dict[tuple[str, str], list[dict]] = {}
    for r in rounds:
        cases.setdefault((r["family"], r["case"]), []).append(r)
    best = {k: max(v, key=lambda r: r["rps"]) for k, v in cases.items()}

    out: list[str] = []
    w = out.append
    w("## Web servers: nginx and Apache httpd modules beside what their users pick instead")
    w("")
    w(
        f"Measured {machine['date']} at commit {machine['commit']} by `benches/webservers/run` (issues 25 and 26; "
        f"docs/benchmarks.md says how). {machine['cpu']}, `nproc` = {machine['nproc']}; wrk, the servers and the "
        f"test issuer share these cores. Load average (1/5/15 min): at start {machine['load_start']}, when the rounds "
        f"began {machine['load_measure']}, after them {machine['load_rounds_end']}, at the end {machine['load_end']}; "
        f"{machine['steal_pct']} % steal during the rounds. {machine['nginx']}, njs {machine['njs']}, "
        f"{machine['apache']}, mod_auth_openidc {machine['openidc']}, {machine['wrk']}."
    )
    w("")
    w(
        f"One load generator for every row: wrk with `benches/webservers/tokens.lua`, HTTP/1.1 keep-alive, "
        f"`Authorization: Bearer` RS256 tokens (~600 bytes) of the test issuer on loopback; every protected "
        f"location serves the same small static file. **Hits**: {machine['hit_tokens']} users' tokens cycled (after "
        f"a {machine['warm_secs']} s warm-up on a freshly started server, so jwtwarden answers from its cache; njs "
        f"and mod_auth_openidc verify every request). **Misses**: {machine['miss_tokens']:,} distinct tokens, split "
        f"between wrk's two threads and each sent once for {machine['miss_secs']} s, to a freshly started server. "
        f"{machine['rounds']} rounds of {machine['round_secs']} s per hit case, the cases interleaved; each row shows "
        f"the case's **best** round, and every round is listed with the load average at its end. CPU per request: "
        f"user + system time of the server's processes (nginx's workers and `jwtwarden serve`, or Apache's "
        f"children) and of wrk over the best round, divided by its requests."
    )
    w("")
    for family, title, setup in (
        (
            "nginx",
            "nginx",
            f"{machine['nginx_workers']} workers in every row, wrk -t2 -c32. The module answers in the access phase; "
            "`auth_request` sends a subrequest to `jwtwarden serve` (loopback TCP, keep-alive); njs (`js_content`, "
            "`benches/webservers/verify.js`) imports the key with WebCrypto and verifies every request, the key "
            "taken from the JWKS when nginx starts (`js_preload_object`), then `r.internalRedirect` to the file.",
        ),
        (
            "apache",
            "Apache httpd",
            (
                f"prefork, {machine['apache_children']} children in every row, wrk -t2 with one connection per child "
                if machine.get("apache_mpm", "prefork") == "prefork"
                else f"event MPM, 2 processes of {(machine['apache_children'] + 1) // 2} threads in every row "
                "(each process one verifier), wrk -t2 with one connection per thread "
            )
            + f"(-c{machine['apache_children']}), `MaxKeepAliveRequests 0`. mod_jwtwarden: `AuthType jwtwarden`, "
            "`Require jwt-issuer`; mod_auth_openidc: `AuthType oauth20`, `OIDCOAuthVerifyJwksUri`, "
            "`Require claim iss:...` and `Require claim aud:api` (the engine checks issuer and audience too), "
            "its default caches (shm).",
        ),
    ):
        fam = [(k, v) for k, v in best.items() if k[0] == family]
        if not fam:
            continue
        ceiling = best.get((family, "ceiling"))
        w(f"### {title}")
        w("")
        w(setup)
        w("")
        w(
            "| Case | Requests/s | p50 | p99 | vs the ceiling | Server CPU per request | wrk CPU per request "
            "| Every round (requests/s) | Load at the end of each round |"
        )
        w("|---|---:|---:|---:|---:|---:|---:|---|---|")
        for (_, case), r in fam:
            every = cases[(family, case)]
            ratio = pct(r["rps"], ceiling["rps"]) if ceiling else "n/a"
            note = ""
            if r["path"] == "misses" and any(x["wraps"] for x in every):
                note = f" (miss pool ran out: {max(x['wraps'] for x in every)} wraps, some requests were hits)"
            errors = ("non2xx", "timeouts", "connect_errors", "read_errors", "write_errors")
            if any(x[k] for x in every for k in errors):
                note += " (**errors** by round: " + "; ".join(
                    ", ".join(f"{x[k]} {k}" for k in errors if x[k]) or "none" for x in every) + ")"
            every_rps = ", ".join(format(x["rps"], ",.0f") for x in every)
            every_load = "; ".join(x["load"] for x in every)
            w(
                f"| {r['label']}{note} | {r['rps']:,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {ratio} | "
                f"{cpu_us(r)} | {r['wrk_cpu_s'] * 1e6 / r['requests']:.1f} µs | {every_rps} | {every_load} |"
            )
        w("")

    if scenarios:
        w("### Key rotation and unknown-kid storm under load")
        w("")
        w(
            f"On servers started at the beginning of the run and warmed with the hit pool then, so that more than "
            f"the engine's unknown-kid cooldown (30 s, the default) has passed since their first JWKS fetch. For "
            f"{machine['scenario_secs']} s, one wrk (half the connections) keeps sending the hit pool while a second "
            f"(the other half) sends, for **rotation**, {machine['hit_tokens']} tokens of a key the issuer published "
            f"just before; for the **storm**, {machine['storm_tokens']:,} tokens each naming a `kid` no key has "
            f"(signed with the real key). JWKS fetches are counted by the issuer over the same seconds. With "
            f"prefork, each connection holds one child, so the new-kid or storm tokens reach half the children "
            f"({machine['apache_children'] // 2} of {machine['apache_children']}); nginx has "
            f"{machine['nginx_workers']} workers, each with its own verifier; mod_auth_openidc keeps its JWKS in "
            f"shared memory; njs has the keys it read at start. The last column: fetches while the server started "
            f"and took 1 s of the hit pool."
        )
        w("")
        w(
            "| Server | Scenario | Legitimate requests | of which failed | New-kid / storm requests | their answers "
            "| JWKS fetches seen by the issuer | at start (start + 1 s warm-up) |"
        )
        w("|---|---|---:|---:|---:|---|---:|---:|")
        for s in scenarios:
            legit, other = s["legit"], s["other"]
            failed = sum(legit[k] for k in ("non2xx", "timeouts", "connect_errors", "read_errors", "write_errors"))
            w(
                f"| {s['family'].replace('apache', 'Apache').replace('nginx', 'nginx')} + {s['label']} | {s['scenario']} | "
                f"{legit['requests']:,} | {failed:,} | {other['requests']:,} | {statuses(other)} | {s['jwks_fetches']} | "
                f"{s['start_fetches']} |"
            )
        w("")

    # Targets (reported, not asserted).
    def rps(family: str, case: str) -> float | None:
        r = best.get((family, case))
        return r["rps"] if r else None

    rows = []

    def target(name: str, a: float | None, b: float | None, goal: float | None, fmt: str) -> None:
        if a is None or b is None:
            return
        ratio = a / b
        verdict = "" if goal is None else ("**met**" if ratio >= goal else "**missed**")
        rows.append(f"| {name} | {fmt.format(ratio=ratio, a=a, b=b)} | {verdict or 'reported'} |")

    target("nginx module ≥ 95 % of the nginx ceiling (hits)", rps("nginx", "module"), rps("nginx", "ceiling"), 0.95,
           "{ratio:.0%} ({a:,.0f} vs {b:,.0f} requests/s)")
    target("nginx module ≥ 2× njs (hits)", rps("nginx", "module"), rps("nginx", "njs"), 2.0,
           "{ratio:.1f}× ({a:,.0f} vs {b:,.0f})")
    target("nginx module misses no slower than njs", rps("nginx", "module_miss"), rps("nginx", "njs_miss"), 1.0,
           "{ratio:.2f}× ({a:,.0f} vs {b:,.0f})")
    target("nginx module vs auth_request + serve (hits)", rps("nginx", "module"), rps("nginx", "serve"), None,
           "{ratio:.2f}× ({a:,.0f} vs {b:,.0f})")
    target("mod_jwtwarden ≥ 95 % of the Apache ceiling (hits)", rps("apache", "jwtwarden"), rps("apache", "ceiling"),
           0.95, "{ratio:.0%} ({a:,.0f} vs {b:,.0f} requests/s)")
    target("mod_jwtwarden vs mod_auth_openidc (hits)", rps("apache", "jwtwarden"), rps("apache", "openidc"), None,
           "{ratio:.2f}× ({a:,.0f} vs {b:,.0f})")
    target("mod_jwtwarden vs mod_auth_openidc (misses)", rps("apache", "jwtwarden_miss"), rps("apache", "openidc_miss"),
           None, "{ratio:.2f}× ({a:,.0f} vs {b:,.0f})")
    if rows:
        w("### Targets (reported, not asserted)")
        w("")
        w("| Target | Measured (best rounds) | Verdict |")
        w("|---|---|---|")
        out.extend(rows)
        w("")

    section = "\n".join(out)
    with open(sys.argv[2], "w") as f:
        f.write(section + "\n")
    print(section)
    if len(sys.argv) > 3:
        path = sys.argv[3]
        text = open(path).read()
        block = f"{BEGIN}\n{section}\n{END}"
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            text = head + block + tail
        elif "\n## Not measured" in text:
            head, tail = text.split("\n## Not measured", 1)
            text = head + "\n" + block + "\n\n## Not measured" + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        with open(path, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
