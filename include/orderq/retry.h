/* retry.h - backoff policy: which failures come back, when, and which are parked
 *
 * Attempt n that fails transiently is retried through delay tier n (the last
 * tier repeats) until max_attempts have been made; permanent failures, bad
 * input and unknown event codes are dead-lettered at once. Dead letters are
 * grouped by a fingerprint: the error class and the error text with the
 * parts that differ from one message to the next (numbers, ids, quoted
 * values) taken out, so "order 9200000217 not found" and "order 9200000218
 * not found" are one problem.
 */
#ifndef ORDERQ_RETRY_H
#define ORDERQ_RETRY_H

#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"

struct oq_config;

enum oq_error_class {
    OQ_ERR_TRANSIENT = 0, /* SMTP 4xx, HTTP 5xx or timeout, deadlock, a shop API that is down */
    OQ_ERR_PERMANENT,     /* SMTP 5xx, HTTP 4xx, a handler's "this can never work" */
    OQ_ERR_BAD_INPUT,     /* the message cannot be decoded or validated */
    OQ_ERR_UNKNOWN_EVENT, /* no handler for its event code */
    OQ_ERR_AMBIGUOUS,     /* an effect outside the database whose outcome is unknown */
    OQ_ERR_TOO_LARGE,     /* the body is over max_message_bytes: never parsed */
};

/* "transient", "permanent", "bad_input", "unknown_event", "ambiguous",
 * "too_large". */
const char *oq_error_class_name(enum oq_error_class cls);

struct oq_retry_decision {
    int retry;          /* 1: publish to the delay exchange; 0: dead-letter */
    size_t tier;        /* index into cfg->retry_tiers_ms */
    int64_t delay_ms;   /* that tier's delay */
    char tier_name[32]; /* the header value selecting it, e.g. "30s" */
    int64_t next_attempt;
};

/* What to do after attempt (1 = the first delivery) failed with cls. */
void oq_retry_decide(const struct oq_config *cfg, enum oq_error_class cls, int64_t attempt,
                     struct oq_retry_decision *out);

/* A peer asked us to wait min_delay_ms (Retry-After; -1: no wish): move
 * a retry d to the first tier at least that long (the last tier when none
 * is). Attempts are counted as before. */
void oq_retry_wait_at_least(const struct oq_config *cfg, int64_t min_delay_ms,
                            struct oq_retry_decision *d);

/* The fingerprint of an error: "<class name>: <normalised text>", at most
 * outlen - 1 bytes, cut on a UTF-8 boundary. */
void oq_error_fingerprint(const char *error_class, const char *error, char *out, size_t outlen);

/* Copy s into out (outlen bytes with the NUL), cut on a UTF-8 boundary
 * with "..." when it does not fit: for bounded header values. */
void oq_cut_utf8(const char *s, char *out, size_t outlen);

#endif
