/*
 * Fleet worker (C front end): one jwtwarden_verifier, driven by the line
 * protocol of tests/fleet/README.md.
 *
 *     worker CONFIG_FILE
 *
 * Prints "ready <pid>", then answers one line per command on stdin:
 *     verify <token>          -> ok | err <kind>
 *     revoke <issuer> <jti>   -> <local|fleet|pending> <unix_ns returned> | err <kind>
 *     watch <token>           -> revoked <unix_ns seen> | err <kind> <unix_ns> | timeout
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jwtwarden.h"

#define WATCH_LIMIT_NS (20ULL * 1000000000ULL)
/* 1 ms between checks: see WATCH_PAUSE_S in worker.py. */
#define WATCH_PAUSE_NS 1000000L

/* Wall clock (CLOCK_REALTIME), comparable between processes. */
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The result code of verifying token (0 for ok). */
static uint32_t check(const jwtwarden_verifier *v, const char *token) {
    jwtwarden_verified *ok = NULL;
    uint32_t rc = jwtwarden_verifier_verify(v, token, strlen(token), &ok, NULL);
    jwtwarden_verified_free(ok);
    return rc;
}

static void watch(const jwtwarden_verifier *v, const char *token) {
    uint64_t deadline = mono_ns() + WATCH_LIMIT_NS;
    struct timespec pause = {0, WATCH_PAUSE_NS};
    while (mono_ns() < deadline) {
        uint32_t rc = check(v, token);
        if (rc != JWTWARDEN_RESULT_OK) {
            uint64_t seen = now_ns();
            if (rc == JWTWARDEN_RESULT_REVOKED)
                printf("revoked %llu\n", (unsigned long long)seen);
            else
                printf("err %s %llu\n", jwtwarden_result_name(rc), (unsigned long long)seen);
            return;
        }
        nanosleep(&pause, NULL);
    }
    printf("timeout\n");
}

static void revoke(const jwtwarden_verifier *v, char *args) {
    char *jti = strchr(args, ' ');
    if (!jti) {
        printf("err usage\n");
        return;
    }
    *jti++ = '\0';
    jwtwarden_propagation how = JWTWARDEN_PROPAGATION_LOCAL;
    jwtwarden_error *err = NULL;
    uint32_t rc = jwtwarden_verifier_revoke_jti(v, args, jti, 0, &how, &err);
    uint64_t returned = now_ns();
    if (rc != JWTWARDEN_RESULT_OK) {
        printf("err %s\n", jwtwarden_result_name(rc));
        jwtwarden_error_free(err);
        return;
    }
    const char *name = how == JWTWARDEN_PROPAGATION_FLEET     ? "fleet"
                       : how == JWTWARDEN_PROPAGATION_PENDING ? "pending"
                                                              : "local";
    printf("%s %llu\n", name, (unsigned long long)returned);
}

/* The whole file at path, NUL-terminated, or NULL. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len + 4096 + 1 > cap) {
            cap = cap * 2 + 8192;
            buf = realloc(buf, cap);
        }
        size_t n = fread(buf + *len, 1, 4096, f);
        *len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[*len] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG_FILE\n", argv[0]);
        return 2;
    }
    size_t len;
    char *config = slurp(argv[1], &len);
    if (!config) {
        perror(argv[1]);
        return 2;
    }
    jwtwarden_verifier *v = NULL;
    jwtwarden_error *err = NULL;
    if (jwtwarden_verifier_new(config, len, &v, &err) != JWTWARDEN_RESULT_OK) {
        fprintf(stderr, "worker.c: %s\n", jwtwarden_error_message(err));
        jwtwarden_error_free(err);
        return 1;
    }
    free(config);
    printf("ready %ld\n", (long)getpid());
    fflush(stdout);

    /* Tokens are a few KiB at most; getline grows the buffer anyway. */
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *arg = strchr(line, ' ');
        if (arg)
            *arg++ = '\0';
        else
            arg = line + n;
        if (strcmp(line, "verify") == 0) {
            uint32_t rc = check(v, arg);
            if (rc == JWTWARDEN_RESULT_OK)
                printf("ok\n");
            else
                printf("err %s\n", jwtwarden_result_name(rc));
        } else if (strcmp(line, "watch") == 0) {
            watch(v, arg);
        } else if (strcmp(line, "revoke") == 0) {
            revoke(v, arg);
        } else if (strcmp(line, "quit") == 0) {
            break;
        } else {
            printf("err unknown_command %s\n", line);
        }
        fflush(stdout);
    }
    free(line);
    jwtwarden_verifier_free(v);
    return 0;
}
