/* ledger.h - the dedup ledger (event_ledger): claim effects, exactly once
 *
 * A claim is an INSERT: the primary key (handler, effect_key) decides who
 * does an effect, never a read before the write. MariaDB's INSERT IGNORE ...
 * RETURNING hands back only the rows it inserted, so one statement claims a
 * whole batch and finds its duplicates.
 *
 * States: `done` for effects inside the database (committed with the claim).
 * For effects outside it (SMTP, HTTP): `sending` with owner and lease_until,
 * then `sent`, or `unknown` when a lease expired with the outcome unknown.
 */
#ifndef ORDERQ_LEDGER_H
#define ORDERQ_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"

struct oq_db;

/* event_ledger.owner is VARCHAR(191): an owner (instance_id, or
 * instance_id + "/effect-N" for an effect worker) longer than this many
 * bytes would be cut, and finish would never find its row again. */
#define OQ_LEDGER_OWNER_MAX 191

/* One effect to claim. Strings are borrowed. */
struct oq_claim {
    const char *handler;
    const char *effect_key; /* event_identifier, or a business key */
    const char *event_identifier;
    const char *event_code;
    const char *result; /* what the effect was, recorded with it */
    int64_t attempts;   /* the delivery attempt that did it (0: 1) */
    int claimed;        /* out: 1 when this call inserted the row */
};

/* Claim claims[0..n) as `done` rows owned by owner, inside the caller's
 * transaction. A row that exists already is a duplicate (claimed = 0); of
 * two claims with the same key in one call only the first is claimed.
 * Claims are written in statements of at most 9,362 rows (MySQL's 65,535
 * placeholders), so any n works. A warning other than a duplicate key (a
 * value cut to its column, bytes that are not utf8mb4) fails the claim.
 * Returns 0, OQ_EINVAL (owner longer than OQ_LEDGER_OWNER_MAX or not
 * UTF-8) or OQ_EDB (the caller redoes or rolls back the transaction). */
OQ_WUR int oq_ledger_claim(struct oq_db *db, const char *owner, struct oq_claim *claims, size_t n,
                           char *err, size_t errlen);

/* Withdraw a claim made earlier in the same transaction (its effect
 * failed). Returns 0 or OQ_EDB. */
OQ_WUR int oq_ledger_unclaim(struct oq_db *db, const char *handler, const char *effect_key,
                             char *err, size_t errlen);

/* ---- effects outside the database (SMTP, HTTP): claim, lease, finish ---- */

enum oq_lease {
    OQ_LEASE_NEW = 0, /* claimed now as `sending`: do the effect, then finish */
    OQ_LEASE_DONE,    /* `done` or `sent` already: ack, count a duplicate */
    OQ_LEASE_HELD,    /* `sending` with a live lease: another process is at it */
    OQ_LEASE_EXPIRED, /* `sending`, lease run out: the outcome is unknown */
    OQ_LEASE_UNKNOWN, /* marked `unknown`: a person decides */
    OQ_LEASE_LOCKED,  /* another transaction kept the row locked past the
                       * connection's innodb_lock_wait_timeout: try later */
};

/* Claim c as `sending`, owned by owner until lease_ms from now, with
 * c->attempts (the delivery attempt), in its own statement (commit it
 * before the call it protects). When the row exists,
 * *out says in which state; a row that vanishes before it is read (its
 * holder released it) is claimed again, and after three such rounds
 * *out is OQ_LEASE_HELD (a lost deadlock is such a round too). When
 * another transaction keeps the row locked past the connection's
 * innodb_lock_wait_timeout, *out is OQ_LEASE_LOCKED, with the server's
 * words in err. The insert is a transaction of its own: a warning other
 * than a duplicate key rolls it back and fails the lease.
 * Returns 0, OQ_EINVAL (owner too long or not UTF-8) or OQ_EDB. */
OQ_WUR int oq_ledger_lease(struct oq_db *db, const struct oq_claim *c, const char *owner,
                           int64_t lease_ms, enum oq_lease *out, char *err, size_t errlen);

/* Whether the row (handler, effect_key) is in state and owned by owner:
 * how a caller that lost the answer to its own lease, take-over or
 * finish (the connection died) learns that the statement did commit.
 * Only meaningful for an owner unique to one thread of one process.
 * Returns 0 or OQ_EDB. */
OQ_WUR int oq_ledger_is_owned(struct oq_db *db, const char *handler, const char *effect_key,
                              const char *owner, const char *state, int *owned, char *err,
                              size_t errlen);

/* Take over an expired `sending` lease (the "resend" policy), or with
 * from_unknown a row marked `unknown` (a person said "send it again"):
 * state `sending`, owner and a new lease, attempts + 1. Returns 0,
 * OQ_ENOTFOUND (in another state, or the lease is live) or OQ_EDB. */
OQ_WUR int oq_ledger_take_over(struct oq_db *db, const char *handler, const char *effect_key,
                               const char *owner, int64_t lease_ms, int from_unknown, char *err,
                               size_t errlen);

/* Give up owner's `sending` claim: the call failed and did nothing, so the
 * next attempt may claim it afresh. Returns 0 or OQ_EDB. */
OQ_WUR int oq_ledger_release(struct oq_db *db, const char *handler, const char *effect_key,
                             const char *owner, char *err, size_t errlen);

/* Finish owner's `sending` row as `sent` or `unknown` with result text.
 * `sent` also finishes owner's row that the sweeper marked `unknown` while
 * owner hung mid-send: the send is known to have happened after all.
 * Returns 0, OQ_ENOTFOUND (not ours any more: the lease was taken over) or
 * OQ_EDB. */
OQ_WUR int oq_ledger_finish(struct oq_db *db, const char *handler, const char *effect_key,
                            const char *owner, const char *state, const char *result, char *err,
                            size_t errlen);

/* ---- many leases and `sent` marks in one statement (effects.c's group commit) ---- */

/* Rows per group; more wait for the next group. */
#define OQ_LEDGER_GROUP_MAX 64

/* One row of a group: a lease to take, or a lease to finish as `sent`.
 * Strings are borrowed. */
struct oq_ledger_mark {
    const char *handler;
    const char *effect_key;
    const char *event_identifier; /* lease only */
    const char *event_code;       /* lease only */
    const char *owner;            /* unique to this one lease (a job of a worker) */
    const char *result;           /* finish only: the peer's answer */
    int64_t attempts;             /* lease only (0: 1) */
    int done;                     /* out: 1 when this call leased or finished the row */
};

/* oq_ledger_lease's insert for marks[0..n), n <= OQ_LEDGER_GROUP_MAX, in
 * one INSERT IGNORE ... RETURNING inside the caller's transaction (commit
 * it before the calls it protects). done = 1: leased now, as
 * OQ_LEASE_NEW. done = 0: the row exists (or another mark of this call
 * has its key); the caller asks oq_ledger_lease, which says in which
 * state. A warning other than a duplicate key fails the whole call: the
 * caller rolls back. Returns 0, OQ_EINVAL (an owner too long or not
 * UTF-8, n too large) or OQ_EDB. */
OQ_WUR int oq_ledger_lease_many(struct oq_db *db, struct oq_ledger_mark *marks, size_t n,
                                int64_t lease_ms, char *err, size_t errlen);

/* oq_ledger_finish(..., "sent", ...) for marks[0..n), n <=
 * OQ_LEDGER_GROUP_MAX, in one UPDATE (and, when not every row changed,
 * one SELECT to learn which did), inside the caller's transaction.
 * done = 1: the row is `sent` under the mark's owner (finished by this
 * call, or by an earlier one whose answer was lost: an owner is unique to
 * one lease, so no one else marks it); done = 0: the row is not the
 * owner's (oq_ledger_finish's OQ_ENOTFOUND). Returns 0,
 * OQ_EINVAL (n too large) or OQ_EDB. */
OQ_WUR int oq_ledger_finish_many(struct oq_db *db, struct oq_ledger_mark *marks, size_t n,
                                 char *err, size_t errlen);

/* ---- abandoned leases: `sending` rows no delivery comes back for (sweeper.h) ---- */

/* A `sending` row whose lease ran out, as the sweeper reads it. The texts
 * are the columns' (VARCHAR(191) of utf8mb4: at most 764 bytes). */
struct oq_lease_row {
    char handler[65];
    char effect_key[768];
    char event_identifier[768];
    char event_code[768];
    char owner[768];
    char lease_until[32]; /* "YYYY-MM-DD HH:MM:SS.ffffff", UTC: as stored, to the microsecond */
    int64_t attempts;
    int64_t expired_ms; /* how long ago the lease ran out, by the database's clock */
};

/* Read at most max rows in state `sending` whose lease ran out more than
 * grace_ms ago (by the database's clock, the one that set lease_until),
 * oldest first, into rows; *n gets how many. Returns 0 or OQ_EDB. */
OQ_WUR int oq_ledger_abandoned(struct oq_db *db, int64_t grace_ms, struct oq_lease_row *rows,
                               size_t max, size_t *n, char *err, size_t errlen);

/* Mark row `unknown` with result, only when it is still as it was read:
 * `sending`, the same owner and lease_until, and that lease run out more
 * than grace_ms ago. The condition is the arbiter, as the primary key is
 * for claims: of two sweepers, or a sweeper and a delivery taking the
 * lease over, whichever writes second changes nothing. Returns 0,
 * OQ_ENOTFOUND (the row changed since it was read: another settled it or
 * took it over) or OQ_EDB. */
OQ_WUR int oq_ledger_abandon(struct oq_db *db, const struct oq_lease_row *row, int64_t grace_ms,
                             const char *result, char *err, size_t errlen);

/* Ledger rows for the gauges and `orderq ledger stats`. */
struct oq_lease_counts {
    int64_t expired;   /* `sending` with the lease run out */
    int64_t abandoned; /* of those, run out more than grace_ms ago */
    int64_t unknown;   /* `unknown`: a person decides */
};

/* Count them (an index range scan: `sending` and `unknown` rows are few).
 * Returns 0 or OQ_EDB. */
OQ_WUR int oq_ledger_lease_counts(struct oq_db *db, int64_t grace_ms, struct oq_lease_counts *out,
                                  char *err, size_t errlen);

#endif
