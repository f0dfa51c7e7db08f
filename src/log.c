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

/* Length of the well-formed UTF-8 character at p, or 0 when the bytes
 * there are not one (a cut sequence at the end of the string included). */
static size_t utf8_char_len(const unsigned char *p)
{
    size_t n = *p < 0x80             ? 1
               : (*p & 0xe0) == 0xc0 ? 2
               : (*p & 0xf0) == 0xe0 ? 3
               : (*p & 0xf8) == 0xf0 ? 4
                                     : 0;
    size_t have = 0;
    while (have < n && p[have] != 0)
        have++;
    if (n == 0 || have < n || !oq_utf8_valid((const char *)p, n))
        return 0;
    return n;
}

/* Replace each byte that is not part of well-formed UTF-8 with '?', so the
 * JSON line stays valid whatever a message quoted (a cut multi-byte
 * character at the end of a truncated message included). */
static void scrub_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = utf8_char_len(p);
        if (n == 0)
            *p++ = '?';
        else
            p += n;
    }
}

/* Append the escape for the character at s (n bytes, valid UTF-8) to out,
 * or copy it when it is harmless. In text logs a control character from
 * event data could end the line and forge the next one (\n, \r, U+2028),
 * or drive the terminal (ESC, other C0 and C1 controls, DEL); a backslash
 * is doubled so an escape in the data cannot pass for one of ours. */
static size_t text_char(char *out, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned c = s[0];
    if (n == 1 && (c < 0x20 || c == 0x7f || c == '\\')) {
        const char *named = c == '\n'   ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                            : c == '\\' ? "\\\\"
                                        : NULL;
        if (named != NULL) {
            memcpy(out, named, 2);
            return 2;
        }
        memcpy(out, "\\x", 2);
        out[2] = hex[c >> 4];
        out[3] = hex[c & 0xf];
        return 4;
    }
    unsigned cp = 0;
    if (n == 2)
        cp = ((c & 0x1fu) << 6) | (s[1] & 0x3fu);
    else if (n == 3)
        cp = ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
    if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
        memcpy(out, "\\u", 2);
        for (int i = 0; i < 4; i++)
            out[2 + i] = hex[(cp >> (12 - 4 * i)) & 0xf];
        return 6;
    }
    memcpy(out, s, n);
    return n;
}

/* Escape in into out, whole characters only, at most cap - 1 bytes; a byte
 * that is not well-formed UTF-8 becomes '?'. Returns the length written. */
static size_t escape_text(char *out, size_t cap, const char *in)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t len = 0;
    char one[8];
    while (*p) {
        size_t n = utf8_char_len(p), w = 1;
        one[0] = '?';
        if (n > 0)
            w = text_char(one, p, n);
        else
            n = 1;
        if (len + w >= cap)
            break;
        memcpy(out + len, one, w);
        len += w;
        p += n;
    }
    out[len] = '\0';
    return len;
}

/* The text line: "ts level msg[ queue=Q][ event_identifier=E]\n", every
 * piece from outside escaped. Cut to the buffer, it still ends its line. */
static void write_text(int level, const struct oq_log_fields *f, const char *ts, const char *msg)
{
    char line[8192];
    size_t cap = sizeof(line) - 1; /* room for the final newline */
    int n = snprintf(line, cap, "%s %-5s ", ts, level_names[level]);
    size_t len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    len += escape_text(line + len, cap - len, msg);
    const char *names[] = {" queue=", " event_identifier="};
    const char *values[] = {f ? f->queue : NULL, f ? f->event_identifier : NULL};
    for (size_t i = 0; i < 2; i++) {
        size_t nl = strlen(names[i]);
        if (values[i] == NULL || len + nl >= cap)
            continue;
        memcpy(line + len, names[i], nl);
        len += nl;
        len += escape_text(line + len, cap - len, values[i]);
    }
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
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
    if (log_format == 0)
        write_json(level, f, ts, msg);
    else
        write_text(level, f, ts, msg);
}

int oq_log_limiter_take(struct oq_log_limiter *l, int period_s, long *skipped)
{
    time_t now = time(NULL);
    int ok;
    pthread_mutex_lock(&l->mu);
    ok = l->last == 0 || now - l->last >= period_s;
    if (ok) {
        *skipped = l->skipped;
        l->skipped = 0;
        l->last = now;
    } else {
        l->skipped++;
    }
    pthread_mutex_unlock(&l->mu);
    return ok;
}
