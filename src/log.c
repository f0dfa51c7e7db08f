/* log.c - JSON lines on stderr */
#include "orderq/log.h"

#include <stdint.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "orderq/json.h"
#include "orderq/event.h" /* oq_utf8_valid */

int oq_log_threshold = OQ_LOG_INFO;
static int log_format; /* enum oq_log_format */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void oq_log_set_level(int level)
{
    oq_log_threshold = level;
}

void oq_log_set_format(int format)
{
    log_format = format;
}

int oq_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *oq_log_level_name(int level)
{
    if (level < 0 || level > OQ_LOG_ERROR)
        return "?";
    return level_names[level];
}

static void write_json(int level, const struct oq_log_fields *f, const char *ts, const char *msg)
{
    const unsigned char *buf = NULL;
    size_t len = 0;
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return;
    yajl_gen_map_open(g);
    oq_json_gen_str(g, "ts");
    oq_json_gen_str(g, ts);
    oq_json_gen_str(g, "level");
    oq_json_gen_str(g, level_names[level]);
    oq_json_gen_str(g, "msg");
    oq_json_gen_str(g, msg);
    if (f != NULL) {
        if (f->queue) {
            oq_json_gen_str(g, "queue");
            oq_json_gen_str(g, f->queue);
        }
        if (f->event_identifier) {
            oq_json_gen_str(g, "event_identifier");
            oq_json_gen_str(g, f->event_identifier);
        }
        if (f->delivery_tag) {
            oq_json_gen_str(g, "delivery_tag");
            yajl_gen_integer(g, (long long)f->delivery_tag);
        }
        if (f->attempt) {
            oq_json_gen_str(g, "attempt");
            yajl_gen_integer(g, f->attempt);
        }
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    /* One write of the whole line: lines never interleave below PIPE_BUF,
     * and a line is never cut (a cut line is no longer JSON). */
    struct iovec iov[2] = {{(void *)(uintptr_t)buf, len}, {(void *)(uintptr_t) "\n", 1}};
    ssize_t ignored = writev(STDERR_FILENO, iov, 2);
    (void)ignored;
    yajl_gen_free(g);
}

/* Replace each byte that is not part of well-formed UTF-8 with '?', so the
 * JSON line stays valid whatever a message quoted (a cut multi-byte
 * character at the end of a truncated message included). */
static void scrub_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = *p < 0x80             ? 1
                   : (*p & 0xe0) == 0xc0 ? 2
                   : (*p & 0xf0) == 0xe0 ? 3
                   : (*p & 0xf8) == 0xf0 ? 4
                                         : 0;
        size_t have = 0;
        while (have < n && p[have] != 0)
            have++;
        if (n == 0 || have < n || !oq_utf8_valid((const char *)p, n)) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

void oq_log_write(int level, const struct oq_log_fields *f, const char *fmt, ...)
{
    char msg[4096], ts[40];
    va_list ap;

    if (level < OQ_LOG_DEBUG || level > OQ_LOG_ERROR)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    scrub_utf8(msg);
    oq_utc_now_iso(ts, sizeof(ts));
    if (log_format == 0) {
        write_json(level, f, ts, msg);
        return;
    }
    char line[4400];
    int n = snprintf(line, sizeof(line), "%s %-5s %s%s%s\n", ts, level_names[level], msg,
                     (f && f->queue) ? " queue=" : "", (f && f->queue) ? f->queue : "");
    if (n > 0) {
        size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        line[len - 1] = '\n'; /* a cut line still ends its line */
        ssize_t ignored = write(STDERR_FILENO, line, len);
        (void)ignored;
    }
}
