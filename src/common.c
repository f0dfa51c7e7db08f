/* common.c - error texts, clocks and backoff, whole-file reads, JSON strings */
#include "orderq/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>

#include "orderq/log.h"

const char *oq_strerror(int err)
{
    switch (err) {
    case OQ_OK:
        return "ok";
    case OQ_ENOMEM:
        return "out of memory";
    case OQ_EINVAL:
        return "invalid input";
    case OQ_ECONFIG:
        return "bad configuration";
    case OQ_EIO:
        return "I/O error";
    case OQ_EBROKER:
        return "RabbitMQ error";
    case OQ_EDB:
        return "MySQL error";
    case OQ_EHTTP:
        return "HTTP error";
    case OQ_ENOTFOUND:
        return "not found";
    case OQ_EMISMATCH:
        return "differs from the configuration";
    case OQ_ETIMEOUT:
        return "timed out";
    case OQ_EINTR:
        return "interrupted";
    case OQ_EREFUSED:
        return "refused";
    case OQ_EAGAIN:
        return "temporary failure";
    default:
        return "unknown error";
    }
}

void oq_json_fputs(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

void oq_utc_now_iso(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

int64_t oq_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t oq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timeval oq_ms_to_timeval(int64_t ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
}

void oq_nap(int64_t ms, volatile sig_atomic_t *stop)
{
    while (ms > 0 && !(stop && *stop)) {
        int64_t step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

uint64_t oq_random_u64(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* no entropy yet (early boot): spread, not secret, is all that is asked */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_sec;
    }
    return r;
}

int64_t oq_backoff_ms(int failures)
{
    int64_t base = 500;
    for (int i = 1; i < failures && base < 30000; i++)
        base *= 2;
    if (base > 30000)
        base = 30000;
    return base / 2 + (int64_t)(oq_random_u64() % (uint64_t)(base / 2 + 1));
}

void oq_reconnect_connected(struct oq_reconnect_backoff *rb, int64_t now)
{
    rb->connected_at = now;
    rb->settled = 0;
}

void oq_reconnect_settled(struct oq_reconnect_backoff *rb)
{
    rb->settled = 1;
}

int64_t oq_reconnect_failed(struct oq_reconnect_backoff *rb, int64_t now, const char *settled_what,
                            char *note, size_t notelen)
{
    if (rb->settled || now - rb->connected_at >= OQ_HEALTHY_CONNECTION_MS)
        rb->failures = 0;
    rb->settled = 0;
    int64_t wait = oq_backoff_ms(++rb->failures);
    if (rb->failures > 1)
        snprintf(note, notelen,
                 "attempt %d: no connection since the last healthy one %s or lasted %d s",
                 rb->failures, settled_what, OQ_HEALTHY_CONNECTION_MS / 1000);
    else
        snprintf(note, notelen, "attempt %d", rb->failures);
    return wait;
}

int oq_read_file(const char *path, size_t max, char **text, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, used = 0;
    int rc = OQ_EIO;
    *text = NULL;
    *len = 0;
    if (f == NULL)
        return OQ_EIO;
    for (;;) {
        if (used + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > max + 8192) {
                errno = EFBIG;
                goto out;
            }
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                errno = ENOMEM;
                goto out;
            }
            buf = grown;
        }
        size_t n = fread(buf + used, 1, cap - used - 1, f);
        used += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        goto out;
    if (used > max) {
        errno = EFBIG;
        goto out;
    }
    buf[used] = '\0';
    *text = buf;
    *len = used;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    if (f != stdin)
        fclose(f);
    return rc;
}

/* Warn, once per path, when a secret file can be read by group or others:
 * the secret is then as safe as the least careful of them. */
static void warn_if_shared(const char *file_setting, const char *path)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static char warned[16][256];
    static size_t n_warned;
    struct stat st;
    if (stat(path, &st) != 0 || (st.st_mode & (S_IRGRP | S_IROTH)) == 0)
        return;
    pthread_mutex_lock(&mu);
    size_t i = 0;
    while (i < n_warned && strcmp(warned[i], path) != 0)
        i++;
    if (i == n_warned) {
        if (n_warned < sizeof(warned) / sizeof(warned[0]))
            snprintf(warned[n_warned++], sizeof(warned[0]), "%s", path);
        oq_warn("%s: %s can be read by %s (mode %04o); expected mode 0600 or 0400 (chmod go= %s)",
                file_setting, path,
                (st.st_mode & S_IRGRP) && (st.st_mode & S_IROTH) ? "group and others"
                : (st.st_mode & S_IRGRP)                         ? "its group"
                                                                 : "others",
                (unsigned)(st.st_mode & 07777), path);
    }
    pthread_mutex_unlock(&mu);
}

int oq_secret_load(const char *value, const char *file_setting, const char *path, char **out,
                   char *err, size_t errlen)
{
    size_t len = 0;
    *out = NULL;
    if (value != NULL && value[0] != '\0') {
        if ((*out = strdup(value)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return OQ_ENOMEM;
        }
        return 0;
    }
    if (path == NULL || path[0] == '\0')
        return 0;
    if (oq_read_file(path, 4096, out, &len) != 0) {
        snprintf(err, errlen, "config: %s: cannot read %s", file_setting, path);
        return OQ_ECONFIG;
    }
    (*out)[strcspn(*out, "\r\n")] = '\0';
    /* Blank would sign with an empty key or send "Bearer ": a file
     * mounted empty, never a secret anyone chose. */
    if ((*out)[strspn(*out, " \t")] == '\0') {
        snprintf(err, errlen, "config: %s: %s %s; expected the secret on its first line",
                 file_setting, path, len == 0 ? "is empty" : "has a blank first line");
        oq_secret_free(*out);
        *out = NULL;
        return OQ_ECONFIG;
    }
    warn_if_shared(file_setting, path);
    return 0;
}

void oq_secret_free(char *secret)
{
    if (secret != NULL)
        memset(secret, 0, strlen(secret));
    free(secret);
}
