#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int g_check_failures = 0;
const char *g_issuer_bin = NULL;
bool g_quick = false;

void check_failed(const char *file, int line, const char *expr, const char *detail) {
  __atomic_fetch_add(&g_check_failures, 1, __ATOMIC_SEQ_CST);
  fprintf(stderr, "    check failed at %s:%d: %s%s%s\n", file, line, expr, detail ? ": " : "",
          detail ? detail : "");
}

void check_code_failed(const char *file, int line, const char *expr, uint32_t got, uint32_t want) {
  char detail[256];
  snprintf(detail, sizeof detail, "got %u (%s), want %u (%s)", got, jwtwarden_result_name(got), want,
           jwtwarden_result_name(want));
  check_failed(file, line, expr, detail);
}

static void die(const char *what) {
  fprintf(stderr, "fatal: %s: %s\n", what, strerror(errno));
  exit(2);
}

long now_secs(void) { return (long)time(NULL); }

void issuer_start(issuer_t *is) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) die("pipe2");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    execl(g_issuer_bin, g_issuer_bin, (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  char line[1024];
  size_t n = 0;
  while (n < sizeof line - 1) {
    ssize_t r = read(out[0], line + n, 1);
    if (r <= 0) {
      fprintf(stderr, "fatal: test issuer %s did not start\n", g_issuer_bin);
      exit(2);
    }
    if (line[n] == '\n') break;
    n++;
  }
  line[n] = '\0';
  char *url = json_string(line, "url");
  char *kid = json_string(line, "kid");
  if (!url || !kid) {
    fprintf(stderr, "fatal: unexpected issuer banner: %s\n", line);
    exit(2);
  }
  is->pid = pid;
  is->stdin_fd = in[1];
  is->stdout_fd = out[0];
  snprintf(is->url, sizeof is->url, "%s", url);
  snprintf(is->kid, sizeof is->kid, "%s", kid);
  const char *colon = strrchr(url, ':');
  is->port = colon ? atoi(colon + 1) : 0;
  free(url);
  free(kid);
}

void issuer_stop(issuer_t *is) {
  close(is->stdin_fd);
  int status;
  while (waitpid(is->pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(is->stdout_fd);
}

char *http_request(int port, const char *method, const char *path, const char *body, int *status) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect to test issuer");
  size_t body_len = body ? strlen(body) : 0;
  char *req = NULL;
  int req_len = asprintf(&req,
                         "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         method, path, port, body_len, body ? body : "");
  if (req_len < 0) die("asprintf");
  for (int sent = 0; sent < req_len;) {
    ssize_t w = write(fd, req + sent, (size_t)(req_len - sent));
    if (w <= 0) die("write to test issuer");
    sent += (int)w;
  }
  free(req);
  size_t cap = 4096, len = 0;
  char *resp = malloc(cap);
  for (;;) {
    if (len + 1024 > cap) resp = realloc(resp, cap *= 2);
    ssize_t r = read(fd, resp + len, cap - len - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  resp[len] = '\0';
  int code = 0;
  sscanf(resp, "HTTP/1.%*d %d", &code);
  if (status) *status = code;
  char *start = strstr(resp, "\r\n\r\n");
  char *out = strdup(start ? start + 4 : "");
  free(resp);
  return out;
}

char *json_string(const char *json, const char *key) {
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\":\"", key);
  const char *p = strstr(json, pat);
  if (!p) return NULL;
  p += strlen(pat);
  const char *end = strchr(p, '"');
  if (!end) return NULL;
  return strndup(p, (size_t)(end - p));
}

long json_long(const char *json, const char *key) {
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(json, pat);
  if (!p) return -1;
  return strtol(p + strlen(pat), NULL, 10);
}

char *issuer_mint(const issuer_t *is, const char *kid, const char *claims, const char *header) {
  char *body = NULL;
  char kid_part[128] = "";
  if (kid) snprintf(kid_part, sizeof kid_part, "\"kid\":\"%s\",", kid);
  if (asprintf(&body, "{%s\"claims\":%s,\"header\":%s}", kid_part, claims ? claims : "null",
               header ? header : "null") < 0)
    die("asprintf");
  int status = 0;
  char *resp = http_request(is->port, "POST", "/admin/mint", body, &status);
  free(body);
  char *token = json_string(resp, "token");
  if (status != 200 || !token) {
    fprintf(stderr, "fatal: mint failed (%d): %s\n", status, resp);
    exit(2);
  }
  free(resp);
  return token;
}

char *claims_json(const issuer_t *is, const char *iss, const char *sub, const char *aud, long exp_offset,
                  const char *jti, const char *extra) {
  long now = now_secs();
  char *out = NULL;
  if (asprintf(&out,
               "{\"iss\":\"%s\",\"sub\":\"%s\",\"aud\":\"%s\",\"iat\":%ld,\"nbf\":%ld,\"exp\":%ld,"
               "\"jti\":\"%s\"%s%s}",
               iss ? iss : is->url, sub, aud, now, now, now + exp_offset, jti, extra ? "," : "",
               extra ? extra : "") < 0)
    die("asprintf");
  return out;
}

char *issuer_add_key(const issuer_t *is, const char *alg) {
  char body[128];
  snprintf(body, sizeof body, "{\"alg\":\"%s\"}", alg);
  int status = 0;
  char *resp = http_request(is->port, "POST", "/admin/keys", body, &status);
  char *kid = json_string(resp, "kid");
  if (status != 200 || !kid) {
    fprintf(stderr, "fatal: add key failed (%d): %s\n", status, resp);
    exit(2);
  }
  free(resp);
  return kid;
}

bool issuer_retire_key(const issuer_t *is, const char *kid) {
  char path[256];
  snprintf(path, sizeof path, "/admin/keys/%s", kid);
  int status = 0;
  free(http_request(is->port, "DELETE", path, NULL, &status));
  return status == 200;
}

long issuer_jwks_requests(const issuer_t *is) {
  char *resp = http_request(is->port, "GET", "/admin/stats", NULL, NULL);
  long n = json_long(resp, "jwks_requests");
  free(resp);
  return n;
}

/* The fetch timeout is generous: under valgrind a loopback fetch can wait
 * seconds for its turn to run beside busy threads, and no test built on this
 * configuration is about timeouts (those build their own). */
char *config_for(const issuer_t *is, const char *issuer_extra) {
  char *cfg = NULL;
  if (asprintf(&cfg,
               "{\"issuers\":[{\"issuer\":\"%s\",\"jwks_uri\":\"%s/jwks.json\",\"audiences\":[\"api\"]%s%s}],"
               "\"http\":{\"allow_http\":true,\"timeout_ms\":30000}}",
               is->url, is->url, issuer_extra ? "," : "", issuer_extra ? issuer_extra : "") < 0)
    die("asprintf");
  return cfg;
}

jwtwarden_verifier *verifier_for(const issuer_t *is, const char *issuer_extra) {
  char *cfg = config_for(is, issuer_extra);
  jwtwarden_verifier *v = NULL;
  jwtwarden_error *err = NULL;
  jwtwarden_result rc = jwtwarden_verifier_new(cfg, strlen(cfg), &v, &err);
  if (rc != JWTWARDEN_RESULT_OK) {
    fprintf(stderr, "fatal: jwtwarden_verifier_new: %u %s\n", rc, jwtwarden_error_message(err));
    exit(2);
  }
  free(cfg);
  return v;
}

uint32_t verify_code(const jwtwarden_verifier *v, const char *token) {
  jwtwarden_verified *out = NULL;
  jwtwarden_result rc = jwtwarden_verifier_verify(v, token, strlen(token), &out, NULL);
  jwtwarden_verified_free(out);
  return rc;
}
