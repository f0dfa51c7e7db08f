/* common.h - error codes and small attributes shared by every orderq part */
#ifndef ORDERQ_COMMON_H
#define ORDERQ_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/time.h>

#if defined(__GNUC__) || defined(__clang__)
#define OQ_WUR          __attribute__((warn_unused_result))
#define OQ_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define OQ_WUR
#define OQ_PRINTF(f, a)
#endif

/* Every function that can fail returns 0 or one of these (negative). */
enum oq_err {
    OQ_OK = 0,
    OQ_ENOMEM = -1,    /* allocation failed */
    OQ_EINVAL = -2,    /* bad argument or bad input */
    OQ_ECONFIG = -3,   /* a setting has a value we cannot use */
    OQ_EIO = -4,       /* a file or socket could not be read or written */
    OQ_EBROKER = -5,   /* RabbitMQ refused or dropped us */
    OQ_EDB = -6,       /* MariaDB/MySQL refused or dropped us */
    OQ_EHTTP = -7,     /* an HTTP peer failed */
    OQ_ENOTFOUND = -8, /* the thing asked for does not exist */
    OQ_EMISMATCH = -9, /* what exists differs from what is configured */
    OQ_ETIMEOUT = -10, /* a deadline passed */
    OQ_EINTR = -11,    /* stopped by a signal */
    OQ_EREFUSED = -12, /* the broker refused one operation (e.g. 403); the connection lives */
    OQ_EAGAIN = -13,   /* a temporary failure: try again later */
};

/* Short English name of an OQ_E* code, never NULL. */
const char *oq_strerror(int err);

/* Write s to out as a quoted JSON string, escaping quotes, backslashes and
 * control characters (for the CLI's --json output). */
void oq_json_fputs(FILE *out, const char *s);

/* The wall-clock time as "2026-11-22T21:49:06.123Z" (buf: 32 bytes). */
void oq_utc_now_iso(char *buf, size_t len);

/* Monotonic milliseconds. */
int64_t oq_now_ms(void);

/* Monotonic microseconds. */
int64_t oq_now_us(void);

/* ms as a struct timeval, for librabbitmq's timeouts. */
struct timeval oq_ms_to_timeval(int64_t ms);

/* Sleep up to ms, returning early once *stop (may be NULL) is set. */
void oq_nap(int64_t ms, volatile sig_atomic_t *stop);

/* Jittered exponential backoff for the n-th consecutive failure: a random
 * delay in [base/2, base], base = 500 ms doubling up to 30 s, so many
 * clients cut off at once do not all come back at once. */
int64_t oq_backoff_ms(int failures);

/* The backoff of a loop that reconnects, started again only after a
 * healthy connection: one that settled something, or stayed up
 * OQ_HEALTHY_CONNECTION_MS. One that ends at once every time (a message it
 * cannot read, a queue it may not consume, a database that refuses every
 * write) would otherwise reconnect twice a second for ever. */
#define OQ_HEALTHY_CONNECTION_MS 10000
struct oq_reconnect_backoff {
    int failures;         /* attempts since the last healthy connection */
    int64_t connected_at; /* oq_now_ms() when the current connection came up */
    int settled;          /* the current connection settled something */
};

/* A connection came up (or was tried) at now, in oq_now_ms() time. */
void oq_reconnect_connected(struct oq_reconnect_backoff *rb, int64_t now);

/* The current connection settled something: it proved healthy. */
void oq_reconnect_settled(struct oq_reconnect_backoff *rb);

/* The current connection ended at now: counts the attempt (from 1 again
 * after a healthy connection) and returns the delay before the next one
 * (oq_backoff_ms). note gets "attempt N" and, from the second attempt in
 * a row on, ": no connection since the last healthy one <settled_what> or
 * lasted 10 s", for the caller's log line. */
int64_t oq_reconnect_failed(struct oq_reconnect_backoff *rb, int64_t now, const char *settled_what,
                            char *note, size_t notelen);

/* A random number for jitter and unique tags (getrandom; the clock when
 * the kernel has no entropy yet). Not for secrets. */
uint64_t oq_random_u64(void);

/* Read a whole file (path "-": stdin) of at most max bytes into a
 * NUL-terminated buffer the caller frees. Returns 0, or OQ_EIO with errno
 * set (EFBIG when larger than max). */
OQ_WUR int oq_read_file(const char *path, size_t max, char **text, size_t *len);

/* A secret (a password, a token): value when it is set, else the first line
 * of the file at path (a mounted secret); *out stays NULL when neither is
 * set. A file whose first line is empty or blank is refused (OQ_ECONFIG); one
 * that group or others can read is logged as a warning, once per path.
 * Returns 0, OQ_ENOMEM, or OQ_ECONFIG with err naming file_setting and path.
 * Free with oq_secret_free, which wipes it first. */
OQ_WUR int oq_secret_load(const char *value, const char *file_setting, const char *path, char **out,
                          char *err, size_t errlen);
void oq_secret_free(char *secret);

/* Size of the error buffers passed around (as in hiredis' errstr). */
#define OQ_ERRLEN 512

#endif
