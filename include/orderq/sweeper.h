/* sweeper.h - the lease sweeper: settle `sending` rows no delivery comes back for
 *
 * A mail or webhook is claimed `sending` under a lease before it is sent
 * (ledger.h, effects.h), and a delivery that later finds the lease expired
 * follows the handler's ambiguous policy. Some rows have no delivery left
 * to find them: a send whose `sent` could not be recorded (its delivery was
 * acked as done), a release that failed, a process killed between lease
 * and send whose message the quorum delivery limit then dead-lettered.
 * They would stay `sending` forever.
 *
 * The sweeper finds `sending` rows whose lease ran out more than
 * sweep_after_ms ago (by then any delivery that could come back has), and
 * settles each in one transaction: the row becomes `unknown` and one dead
 * letter of class `ambiguous` is stored for a person. It never sends: it
 * has no message body, so the `resend` policy cannot apply; a person
 * decides (docs/consumer.md, "Abandoned leases").
 *
 * Safe with any number of sweepers on any number of hosts: the UPDATE
 * that settles a row is conditional on the row being as it was read, and
 * the letter's key is derived from the lease, so a second sweeper (or a
 * second pass) changes nothing and stores nothing.
 *
 * A sweeper letter is not a message: its properties column holds a JSON
 * string saying so instead of an object, so `orderq dlq replay` skips it
 * whatever its options (there is nothing to replay).
 */
#ifndef ORDERQ_SWEEPER_H
#define ORDERQ_SWEEPER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"
#include "orderq/ledger.h"

struct oq_config;
struct oq_db;

/* Rows read (and settled) per round of a pass. */
#define OQ_SWEEP_BATCH 50

/* What a pass did, and the ledger after it. */
struct oq_sweep_stats {
    int64_t swept;   /* rows marked `unknown` by this pass (or that would be: dry run) */
    int64_t letters; /* dead letters stored (a row's letter found stored already: not counted) */
    int64_t lost;    /* rows another sweeper or a delivery settled or took over first */
    struct oq_lease_counts after; /* read when the pass ended */
};

/* Called for each row a pass settled (or, dry run, would settle). */
typedef void (*oq_sweep_row_fn)(void *ctx, const struct oq_lease_row *row);

/* One pass on db: settle every abandoned lease, OQ_SWEEP_BATCH rows at a
 * time, each row in a transaction of its own; who (the instance) is named
 * in the row's result and the letter. dry_run: settle nothing, report at
 * most max_rows rows (0: OQ_SWEEP_BATCH) that would be. on_row (may be
 * NULL) is called for each row settled, or that would be. The pass ends
 * early, after the row in hand, once *stop (may be NULL) is set. Returns
 * 0, OQ_ENOMEM or OQ_EDB (err says why; oq_db_last_class(db) says what
 * kind: the caller waits out an outage and tries again; no row is ever
 * half settled). out counts what was done before a failure too. */
OQ_WUR int oq_sweep(struct oq_db *db, const struct oq_config *cfg, const char *who, int dry_run,
                    size_t max_rows, oq_sweep_row_fn on_row, void *ctx, volatile sig_atomic_t *stop,
                    struct oq_sweep_stats *out, char *err, size_t errlen);

/* The dead letter's key for the lease row holds: SHA-256 (hex) of
 * "sweep:", handler, effect_key and lease_until, NUL-separated, so every
 * sweep of the same lease, by any process, names the same letter and the
 * table's unique key keeps one. out: 65 bytes. Returns 0 or OQ_ENOMEM. */
OQ_WUR int oq_sweep_letter_key(const char *handler, const char *effect_key, const char *lease_until,
                               char *out);

/* The delivery of event_identifier came back for handler/effect_key after
 * the sweeper marked it `unknown`: delete the sweeper's letter for it (the one whose key is
 * oq_sweep_letter_key of its lease), since the delivery's own letter, which
 * holds the message and can be replayed, takes its place; one ambiguous
 * effect, one letter. Call it before the delivery is parked: if parking
 * fails the delivery is not acked and comes back, so the message is never
 * lost; but from the delete until the archiver stores the new letter (at
 * once, or when an archiver next runs under --no-archive) `dlq list` shows
 * none for the effect, whose ledger row still says `unknown`. Only the event that claimed the row can: another event with the
 * same effect key (or one forged with it) is parked beside the sweeper's
 * letter, whose facts come from the ledger, not from a message.
 * *retired: the letter's id, or 0 when there was none (never swept,
 * purged already, another event). Returns 0 or OQ_EDB (err says why). */
OQ_WUR int oq_sweep_letter_retire(struct oq_db *db, const char *handler, const char *effect_key,
                                  const char *event_identifier, int64_t *retired, char *err,
                                  size_t errlen);

/* How often the thread sweeps for a grace of grace_ms: a quarter of it,
 * from 1 s to 30 s (a row is settled at most that long after it became
 * abandoned, and the gauges are as old). */
int64_t oq_sweep_interval_ms(int64_t grace_ms);

struct oq_sweeper; /* opaque: a thread */

/* Start sweeping every oq_sweep_interval_ms(cfg->sweep_after_ms), on a
 * thread with its own MySQL connection (reopened with backoff), setting
 * the ledger gauges after each pass. Returns 0 or OQ_ENOMEM. */
OQ_WUR int oq_sweeper_start(const struct oq_config *cfg, struct oq_sweeper **out);

/* Stop (after the row in hand) and free. NULL is fine. */
void oq_sweeper_stop(struct oq_sweeper *s);

#endif
