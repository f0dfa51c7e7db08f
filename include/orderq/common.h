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

/* ms as a struct timeval, for librabbitmq's timeouts. */
struct timeval oq_ms_to_timeval(int64_t ms);

/* Sleep up to ms, returning early once *stop (may be NULL) is set. */
void oq_nap(int64_t ms, volatile sig_atomic_t *stop);

/* Jittered exponential backoff for the n-th consecutive failure: a random
 * delay in [base/2, base], base = 500 ms doubling up to 30 s, so many
 * clients cut off at once do not all come back at once. */
int64_t oq_backoff_ms(int failures);

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
