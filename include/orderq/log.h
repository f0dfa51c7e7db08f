/* log.h - JSON lines on stderr: ts, level, msg and the fields known
 *
 * The level is checked before anything is formatted, so a debug line in a
 * hot path costs one comparison when debug is off. Safe from any thread:
 * each line is built in a local buffer and written with one write(2).
 */
#ifndef ORDERQ_LOG_H
#define ORDERQ_LOG_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "orderq/common.h"

enum oq_log_level { OQ_LOG_DEBUG = 0, OQ_LOG_INFO, OQ_LOG_WARN, OQ_LOG_ERROR, OQ_LOG_OFF };

/* Fields of the message being handled. Any member may be 0 / NULL. */
struct oq_log_fields {
    const char *queue;
    const char *event_identifier;
    uint64_t delivery_tag;
    int64_t attempt;
};

extern int oq_log_threshold; /* lines below this level are dropped */

void oq_log_set_level(int level);
/* 0: JSON lines (default); 1: plain text for a person at a terminal. */
void oq_log_set_format(int format);
/* "debug", "info", "warn", "error" -> level, or -1. */
int oq_log_level_parse(const char *name);
const char *oq_log_level_name(int level);

void oq_log_write(int level, const struct oq_log_fields *f, const char *fmt, ...) OQ_PRINTF(3, 4);

#define oq_log(level, f, ...)                                                                      \
    do {                                                                                           \
        if ((level) >= oq_log_threshold)                                                           \
            oq_log_write((level), (f), __VA_ARGS__);                                               \
    } while (0)

/* At most one line per period for a kind of message a peer can repeat at
 * will (a hostile publisher, a flood of HTTP clients): the log stays
 * readable and cannot fill a disk. Define with OQ_LOG_LIMITER_INIT. */
struct oq_log_limiter {
    pthread_mutex_t mu;
    time_t last;
    long skipped;
};
#define OQ_LOG_LIMITER_INIT {PTHREAD_MUTEX_INITIALIZER, 0, 0}

/* 1 when a line may be written now, with *skipped = the lines left out
 * since the last one; 0 (and one more counted) when it is too soon. */
int oq_log_limiter_take(struct oq_log_limiter *l, int period_s, long *skipped);

#define oq_debug(...) oq_log(OQ_LOG_DEBUG, NULL, __VA_ARGS__)
#define oq_info(...)  oq_log(OQ_LOG_INFO, NULL, __VA_ARGS__)
#define oq_warn(...)  oq_log(OQ_LOG_WARN, NULL, __VA_ARGS__)
#define oq_error(...) oq_log(OQ_LOG_ERROR, NULL, __VA_ARGS__)

#endif
