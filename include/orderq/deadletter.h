/* deadletter.h - archive the dead-letter queue into the dead_letter table
 *
 * `orderq consume` runs an archiver beside the pipeline: it consumes the
 * dead-letter queue on a connection of its own and acks each letter only
 * after its row is committed. While MySQL is down letters wait in the
 * queue. A letter whose body is too big for a row (over
 * OQ_DEAD_LETTER_MAX_BODY or MySQL's max_allowed_packet) gets a row
 * without its body, saying where it is, and the letter itself goes to the
 * held queue, confirmed before the ack: left unacked, 64 of them would
 * stop the archive. A letter MySQL refuses stays unacked (reported in the
 * log and the orderq_dead_letters_held gauge), never dropped. A letter delivered twice (a crash
 * between commit and ack) is one row: its key is a hash of its properties, headers and body as they
 * came (not of their JSON, which cannot tell every two letters apart), the dead queue's own
 * x-delivery-count left out.
 *
 * Letters orderq parked carry its x-orderq-* headers and its own user_id
 * (trust.h); letters RabbitMQ dead-lettered itself (a quorum queue's
 * delivery limit: the message crashed or hung the consumer each time) are
 * described from x-death, and so is any letter whose x-orderq-* headers
 * orderq did not write (kept in its headers only, the error says so).
 */
#ifndef ORDERQ_DEADLETTER_H
#define ORDERQ_DEADLETTER_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#include "orderq/common.h"

struct oq_config;
struct oq_db;

#define OQ_DEAD_LETTER_MAX_BODY (16u << 20) /* bytes archived whole; larger are held */
/* How the error of a letter orderq did not publish starts. */
#define OQ_DEAD_LETTER_NOT_OURS "not from orderq: "
/* The queue (after dead_queue's name) for letters too big to archive. */
#define OQ_DEAD_LETTER_HELD_SUFFIX ".held"

/* One dead_letter row, built from a message of the dead-letter queue. */
struct oq_dead_letter {
    char letter_key[65]; /* SHA-256 hex of properties, headers and body */
    char queue[256], exchange[256], routing_key[256];
    char event_code[192], event_identifier[192];
    char *properties_json, *headers_json; /* owned */
    const void *body;                     /* borrowed from the message */
    size_t body_size;
    char error_class[32], error[1024], fingerprint[256];
    int64_t attempts;
    char first_failed_at[32], last_failed_at[32]; /* "YYYY-MM-DD HH:MM:SS.fff" UTC or "" */
    char host[256];
    int64_t pid;   /* 0: unknown */
    int body_held; /* 1: the row keeps no body (it is in the held queue) */
};

/* Describe m. Text columns are cut to fit and made valid UTF-8.
 * delivery_limit: the work queues' x-delivery-limit, for a letter RabbitMQ
 * dead-lettered when it ran out (it does not say how often it delivered).
 * max_message_bytes: a body over it is not parsed to find the event.
 * orderq_user: orderq's broker user; m's x-orderq-* headers are believed
 * only when its user_id is that (NULL: never); any other letter's error
 * starts with OQ_DEAD_LETTER_NOT_OURS and names its user_id, whatever its
 * x-death says. Returns 0 or OQ_ENOMEM. */
OQ_WUR int oq_dead_letter_from_message(const amqp_message_t *m, int64_t delivery_limit,
                                       int64_t max_message_bytes, const char *orderq_user,
                                       struct oq_dead_letter *out);
void oq_dead_letter_clear(struct oq_dead_letter *dl);

/* INSERT IGNORE the row (autocommit). *stored: 1 new, 0 it was there.
 * Returns 0 or OQ_EDB. */
OQ_WUR int oq_dead_letter_store(struct oq_db *db, const struct oq_dead_letter *dl, int *stored,
                                char *err, size_t errlen);

/* The dead letters not replayed, by class: on_row(ctx, {error_class,
 * count}, 2) for each, the commonest first. No index on error_class: a
 * scan, fine for letters meant to be few. Returns 0, OQ_EDB, or on_row's
 * refusal as oq_db_query_rows returns it. */
OQ_WUR int oq_dead_letter_classes(struct oq_db *db,
                                  int (*on_row)(void *ctx, const char *const *values, unsigned n),
                                  void *ctx);

/* A header key stored as this prefix and the key's bytes in hex. */
#define OQ_DEAD_LETTER_HEX_KEY "@hex:"

/* Properties or headers as JSON (for the table, and for tests), every
 * byte kept: a byte string that is not UTF-8 (or holds a NUL) becomes
 * {"hex": "..."}; a key that is not, or that starts with
 * OQ_DEAD_LETTER_HEX_KEY, or a nested table's only key when it is "hex",
 * becomes OQ_DEAD_LETTER_HEX_KEY and its bytes in hex (JSON keys are
 * strings). A float that is NaN or infinite becomes "NaN", "Infinity" or
 * "-Infinity" (JSON has no such numbers). Free the result; NULL when out
 * of memory. */
char *oq_amqp_properties_json(const amqp_basic_properties_t *p);
char *oq_amqp_table_json(const amqp_table_t *t);

/* Is key one of the headers orderq writes afresh on each retry or dead
 * letter (x-orderq-*, orderq-delay), or RabbitMQ's dead-lettering history
 * (x-death, x-first-death-*, x-last-death-*)? Those are not carried over. */
int oq_header_is_orderqs(amqp_bytes_t key);

/* A stored letter's properties and headers (as oq_amqp_properties_json and
 * oq_amqp_table_json wrote them, hex-encoded keys and byte strings back to
 * their bytes), ready to publish again: orderq's own
 * headers dropped so attempts start again, `spare` free header entries at
 * the end for the caller. user_id is amqp_user whatever was stored
 * (RabbitMQ refuses another's, and orderq's own is what makes the consumer
 * believe the x-orderq-* headers the caller adds; NULL: none). Strings point into the trees;
 * tables come from pool. Returns 0, OQ_EINVAL or OQ_ENOMEM. */
OQ_WUR int oq_dead_letter_properties(yajl_val properties, yajl_val headers, const char *amqp_user,
                                     int spare, amqp_pool_t *pool, amqp_basic_properties_t *out);

/* dead_queue's held queue (dead_queue + OQ_DEAD_LETTER_HELD_SUFFIX): the
 * letters whose body is too big for a dead_letter row, each with a row
 * that says so. malloc'd; NULL when out of memory. */
char *oq_dead_letter_held_queue(const struct oq_config *cfg);

struct oq_archiver; /* opaque: a thread */

/* Start archiving cfg->dead_queue. Returns 0, OQ_EINVAL (amqp_url does
 * not parse) or OQ_ENOMEM. */
OQ_WUR int oq_archiver_start(const struct oq_config *cfg, struct oq_archiver **out);

/* Stop (unacked letters go back to the queue) and free. NULL is fine. */
void oq_archiver_stop(struct oq_archiver *a);

#endif
