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

#include "orderq/common.h"

struct oq_db;

/* One effect to claim. Strings are borrowed. */
struct oq_claim {
    const char *handler;
    const char *effect_key; /* event_identifier, or a business key */
    const char *event_identifier;
    const char *event_code;
    const char *result; /* what the effect was, recorded with it */
    int claimed;        /* out: 1 when this call inserted the row */
};

/* Claim claims[0..n) as `done` rows owned by owner, inside the caller's
 * transaction. A row that exists already is a duplicate (claimed = 0); of
 * two claims with the same key in one call only the first is claimed.
 * Returns 0 or OQ_EDB (the caller redoes or rolls back the transaction). */
OQ_WUR int oq_ledger_claim(struct oq_db *db, const char *owner, struct oq_claim *claims, size_t n,
                           char *err, size_t errlen);

/* Withdraw a claim made earlier in the same transaction (its effect
 * failed). Returns 0 or OQ_EDB. */
OQ_WUR int oq_ledger_unclaim(struct oq_db *db, const char *handler, const char *effect_key,
                             char *err, size_t errlen);

#endif
