/* dlq_replay.c - `orderq dlq replay`: send letters back, each confirmed before it is marked
 *
 * A page of letters at a time: each published mandatory with a publisher
 * confirm (all of the page in flight together), then the ones the broker
 * confirmed and a queue took are marked replayed in one statement. A crash
 * between the confirms and the mark sends those letters again on the next
 * replay; the consumer's ledger makes the second copies duplicates.
 */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "orderq/broker.h"
#include "orderq/deadletter.h"
#include "orderq/json.h"
#include "orderq/publish.h"
#include "orderq/trust.h"

#define PAGE_SIZE          100 /* letters (with bodies) read at a time by replay */
#define CONFIRM_TIMEOUT_MS 30000
#define MAX_REASONS        1000 /* failures kept for the summary; the rest are counted */
/* ---- replay ---------------------------------------------------------------------- */

struct letter {
    long long id;
    char *exchange, *routing_key, *queue, *event_code, *event_id, *properties, *headers, *body_hex;
    int not_ours;        /* the archiver found it was not orderq's (its error says so) */
    long long body_held; /* its body_size when the body is not in the row (held queue);
                          * -1: the whole letter is there (its properties cannot be decoded) */
};

struct page {
    struct letter l[PAGE_SIZE];
    size_t n;
};

struct reason {
    long long id;
    char *why;
};

struct reasons {
    struct reason v[MAX_REASONS];
    size_t n;
};

/* What became of each letter of a page on its way. */
enum fate { PUBLISHED, CONFIRMED, REPLAYED, FAILED, SKIPPED };

struct flight {
    const struct page *pg;
    enum fate fate[PAGE_SIZE];
    uint64_t seq[PAGE_SIZE];
    char why[PAGE_SIZE][512];
    size_t n; /* letters of pg handled so far */
};

struct replay {
    struct dlq *d;
    struct where w;
    long long max_id, total, limit, rate;
    const char *to_queue, *as;
    int force_resend, trust_headers;
    char *held_queue; /* where bodies too big for a row are */
    char *amqp_user;  /* a stored user_id is kept only when it is ours */
    struct oq_broker *b;
    struct oq_publisher *pub;
    char known_exchanges[16][256]; /* checked to exist */
    size_t nknown;
    struct flight *flight; /* the page on its way */
    /* the tally */
    long long replayed, failed, skipped;
    struct reasons *failures, *skips;
    int64_t start_ms;
    struct cli_progress bar;
};

static int page_row(void *ctx, const char *const *v, unsigned n)
{
    struct page *pg = ctx;
    if (n < 11 || pg->n == PAGE_SIZE)
        return 0;
    struct letter *l = &pg->l[pg->n++];
    char **field[] = {&l->exchange, &l->routing_key, &l->queue,   &l->event_code,
                      &l->event_id, &l->properties,  &l->headers, &l->body_hex};
    memset(l, 0, sizeof(*l));
    l->id = strtoll(v[0], NULL, 10);
    for (unsigned i = 0; i < 8; i++)
        if ((*field[i] = strdup(v[i + 1] ? v[i + 1] : "")) == NULL)
            return 1;
    l->not_ours = v[9] != NULL && strcmp(v[9], "1") == 0;
    l->body_held = v[10] != NULL ? strtoll(v[10], NULL, 10) : 0;
    return 0;
}

static void page_clear(struct page *pg)
{
    for (size_t i = 0; i < pg->n; i++) {
        struct letter *l = &pg->l[i];
        char *field[] = {l->exchange, l->routing_key, l->queue,   l->event_code,
                         l->event_id, l->properties,  l->headers, l->body_hex};
        for (unsigned k = 0; k < 8; k++)
            free(field[k]);
    }
    pg->n = 0;
}

/* The next letters after id `after`, in id order. */
static int fetch_page(struct replay *r, long long after, int with_body, struct page *pg)
{
    struct where w = r->w;
    char sql[3072];
    page_clear(pg);
    dlq_where_param(&w, "id > ?", OQ_INT(after));
    dlq_where_param(&w, "id <= ?", OQ_INT(r->max_id));
    w.p[w.n++] = OQ_INT(PAGE_SIZE);
    /* The archiver starts the error of a letter orderq did not publish
     * with OQ_DEAD_LETTER_NOT_OURS; nobody but orderq writes this table. */
    snprintf(sql, sizeof(sql),
             "SELECT id, exchange_name, routing_key, queue, event_code, event_identifier,"
             " properties, headers, %s, LEFT(error, %d) = '%s', IF(error_class = 'unreadable', -1,"
             " IF(LENGTH(body) < body_size, body_size, 0))"
             " FROM dead_letter%s ORDER BY id LIMIT ?",
             with_body ? "HEX(body)" : "''", (int)strlen(OQ_DEAD_LETTER_NOT_OURS),
             OQ_DEAD_LETTER_NOT_OURS, w.sql);
    int rc = oq_db_query_rows(r->d->db, sql, w.p, w.n, page_row, pg);
    return rc == 0 ? EX_OK : dlq_db_fail(r->d, "reading dead letters");
}

/* Where a letter goes: --to-queue, else where it was first published, else
 * straight to the queue it failed in. */
static void destination(const struct replay *r, const struct letter *l, const char **exchange,
                        const char **routing_key)
{
    *exchange = "";
    if (r->to_queue != NULL)
        *routing_key = r->to_queue;
    else if (l->exchange[0] != '\0') {
        *exchange = l->exchange;
        *routing_key = l->routing_key;
    } else
        *routing_key = l->routing_key[0] ? l->routing_key : l->queue;
}

static void add_reason(struct reasons *rs, long long id, const char *why)
{
    if (rs->n == MAX_REASONS)
        return; /* the summary says how many in all */
    rs->v[rs->n].id = id;
    rs->v[rs->n].why = strdup(why);
    if (rs->v[rs->n].why != NULL)
        rs->n++;
}

static void reasons_free(struct reasons *rs)
{
    for (size_t i = 0; rs && i < rs->n; i++)
        free(rs->v[i].why);
    free(rs);
}

/* The letter of the page in flight that has confirm sequence seq, or -1. */
static int flight_index_by_seq(const struct flight *f, uint64_t seq)
{
    for (size_t i = 0; f != NULL && i < f->n; i++)
        if (f->fate[i] == PUBLISHED && f->seq[i] == seq)
            return (int)i;
    return -1;
}

static void on_settled(void *ctx, uint64_t seq, enum oq_confirm outcome)
{
    struct replay *r = ctx;
    int i = flight_index_by_seq(r->flight, seq);
    if (i < 0)
        return;
    if (r->flight->why[i][0] != '\0') /* returned: no queue took it */
        r->flight->fate[i] = FAILED;
    else if (outcome == OQ_CONFIRM_ACK)
        r->flight->fate[i] = CONFIRMED;
    else {
        r->flight->fate[i] = FAILED;
        snprintf(r->flight->why[i], sizeof(r->flight->why[i]), "the broker refused it (nack)");
    }
}

/* A letter no queue took comes back before its ack: found by the
 * x-orderq-replay-of header every replayed letter carries. */
static void on_returned(void *ctx, const amqp_basic_return_t *why, const amqp_message_t *m)
{
    struct replay *r = ctx;
    const amqp_field_value_t *v = oq_amqp_header(&m->properties, "x-orderq-replay-of");
    int64_t id = 0;
    if (r->flight == NULL || v == NULL || oq_amqp_field_int(v, &id) != 0)
        return;
    for (size_t i = 0; i < r->flight->n; i++)
        if (r->flight->pg->l[i].id == id && r->flight->fate[i] == PUBLISHED)
            snprintf(r->flight->why[i], sizeof(r->flight->why[i]),
                     "no queue took it (%u %.*s; exchange \"%.*s\", routing key \"%.*s\")",
                     why->reply_code, (int)why->reply_text.len, (const char *)why->reply_text.bytes,
                     (int)why->exchange.len, (const char *)why->exchange.bytes,
                     (int)why->routing_key.len, (const char *)why->routing_key.bytes);
}

static void replay_disconnect(struct replay *r)
{
    oq_publisher_free(r->pub);
    r->pub = NULL;
    oq_broker_close(r->b);
    r->b = NULL;
}

/* Channel 1 for the passive exchange checks (a 404 closes the channel it
 * happens on, and oq_broker_check opens it again); channel 2 publishes in
 * confirm mode, a page of letters in flight. */
static int replay_connect(struct replay *r, char *err, size_t errlen)
{
    struct oq_publisher_callbacks cb = {on_settled, on_returned, r};
    r->nknown = 0;
    return oq_publisher_connect(r->d->ctx->cfg, "dlq-replay", 2, PAGE_SIZE, 1, &cb, &r->b, &r->pub,
                                err, errlen);
}

/* Does the exchange exist? 1 yes, 0 no (why says so), < 0 the connection
 * failed. The default exchange always does. */
static int exchange_exists(struct replay *r, const char *name, char *why, size_t whylen)
{
    if (name[0] == '\0')
        return 1;
    for (size_t i = 0; i < r->nknown; i++)
        if (strcmp(r->known_exchanges[i], name) == 0)
            return 1;
    amqp_exchange_declare(oq_broker_conn(r->b), 1, amqp_cstring_bytes(name),
                          amqp_cstring_bytes("direct"), 1, 0, 0, 0, amqp_empty_table);
    int rc = oq_broker_check(r->b, 1, "exchange.declare (passive)");
    if (rc == 0) {
        if (r->nknown < sizeof(r->known_exchanges) / sizeof(r->known_exchanges[0]))
            snprintf(r->known_exchanges[r->nknown++], sizeof(r->known_exchanges[0]), "%s", name);
        return 1;
    }
    if (rc == OQ_ENOTFOUND)
        snprintf(why, whylen, "exchange \"%s\" does not exist", name);
    else
        snprintf(why, whylen, "checking exchange \"%s\": %s", name, oq_broker_error(r->b));
    return rc == OQ_EBROKER ? -1 : 0;
}

/* Everything a letter needs before it can go: its body, properties and
 * headers parsed back, the place it goes. */
struct outgoing {
    unsigned char *body;
    size_t len;
    yajl_val props, headers;
    amqp_basic_properties_t p;
    amqp_table_entry_t *replay_of;
    const char *exchange, *routing_key;
};

static void outgoing_clear(struct outgoing *o)
{
    free(o->body);
    yajl_tree_free(o->props);
    yajl_tree_free(o->headers);
    memset(o, 0, sizeof(*o));
}

/* The shop's user_id, kept on the replay as x-orderq-original-user-id: the
 * stored user_id when it is not orderq's (RabbitMQ dead-lettered the shop's
 * message as published), else the header orderq recorded, believed only
 * on a letter orderq published (trust.h). NULL: none. */
static const char *original_user_id(const struct replay *r, yajl_val props, yajl_val headers)
{
    yajl_val uid = oq_json_member(props, "user_id");
    yajl_val kept = oq_json_member(headers, "x-orderq-original-user-id");
    if (!YAJL_IS_STRING(uid))
        return NULL;
    if (r->amqp_user == NULL || strcmp(uid->u.string, r->amqp_user) != 0)
        return uid->u.string;
    return YAJL_IS_STRING(kept) ? kept->u.string : NULL;
}

static amqp_table_entry_t *add_header(amqp_basic_properties_t *p, const char *key)
{
    amqp_table_entry_t *e = &p->headers.entries[p->headers.num_entries++];
    e->key = amqp_cstring_bytes(key);
    return e;
}

/* Did orderq's own user publish the stored letter (trust.h)? */
static int stored_by_orderq(const struct replay *r, const struct letter *l, yajl_val props)
{
    yajl_val uid = oq_json_member(props, "user_id");
    return !l->not_ours && r->amqp_user != NULL && YAJL_IS_STRING(uid) &&
           strcmp(uid->u.string, r->amqp_user) == 0;
}

/* A letter that cannot go as it is, or not without a person's word: 1
 * with why filled in, else 0. */
static int refused(const struct replay *r, const struct letter *l, const struct outgoing *o,
                   char *why, size_t whylen)
{
    if (l->body_held < 0) {
        snprintf(why, whylen,
                 "its properties cannot be decoded: the letter is whole in queue %s, not in the "
                 "archive (docs/dlq.md, \"Letters orderq cannot read\")",
                 r->held_queue);
        return 1;
    }
    if (l->body_held > 0) {
        snprintf(why, whylen,
                 "its body (%lld bytes) is not in the archive but in queue %s, too big for a row; "
                 "move it from there (docs/dlq.md, \"Held letters\")",
                 l->body_held, r->held_queue);
        return 1;
    }
    /* The sweeper writes its rows straight into the table, properties a
     * JSON string (the archiver always stores an object): only there, or
     * on a letter orderq's user published, is x-orderq-swept-by believed.
     * Anyone else's is just a header. */
    int sweepers = !YAJL_IS_OBJECT(o->props) || stored_by_orderq(r, l, o->props);
    if (sweepers && oq_json_member(o->headers, "x-orderq-swept-by") != NULL) {
        snprintf(why, whylen,
                 "the lease sweeper wrote it, not a failed message: there is nothing to replay "
                 "(docs/consumer.md, \"Abandoned leases\", says what to do)");
        return 1;
    }
    if (l->not_ours && r->to_queue == NULL && !r->trust_headers) {
        snprintf(why, whylen,
                 "orderq did not publish it (see `orderq dlq show %lld`): exchange \"%.100s\" and "
                 "routing key \"%.100s\" come from headers anyone can write; replay it with "
                 "--to-queue QUEUE, or with --trust-headers to send it there",
                 l->id, o->exchange, o->routing_key);
        return 1;
    }
    return 0;
}

/* Returns 0, or SKIPPED with why filled in. */
static int prepare_letter(struct replay *r, const struct letter *l, amqp_pool_t *pool,
                          struct outgoing *o, char *why, size_t whylen)
{
    memset(o, 0, sizeof(*o));
    o->props = oq_json_parse(l->properties, NULL, 0);
    o->headers = oq_json_parse(l->headers, NULL, 0);
    destination(r, l, &o->exchange, &o->routing_key);
    if (refused(r, l, o, why, whylen))
        return SKIPPED;
    if (o->exchange[0] == '\0' && o->routing_key[0] == '\0') {
        snprintf(why, whylen, "it names no exchange, routing key or queue (use --to-queue)");
        return SKIPPED;
    }
    if (dlq_hex_decode(l->body_hex, &o->body, &o->len) != 0) {
        snprintf(why, whylen, "its body could not be read back");
        return SKIPPED;
    }
    if (!YAJL_IS_OBJECT(o->props) || !YAJL_IS_OBJECT(o->headers)) {
        snprintf(why, whylen, "its stored properties or headers are not JSON objects");
        return SKIPPED;
    }
    if (oq_dead_letter_properties(o->props, o->headers, r->amqp_user, 3, pool, &o->p) != 0) {
        snprintf(why, whylen, "its stored headers cannot be sent again");
        return SKIPPED;
    }
    o->replay_of = add_header(&o->p, "x-orderq-replay-of");
    o->replay_of->value.kind = AMQP_FIELD_KIND_I64;
    o->replay_of->value.value.i64 = l->id;
    if (r->force_resend) { /* a person decided: send what may have gone once more */
        amqp_table_entry_t *force = add_header(&o->p, "x-orderq-force-resend");
        force->value.kind = AMQP_FIELD_KIND_I64;
        force->value.value.i64 = 1;
    }
    const char *uid = original_user_id(r, o->props, o->headers);
    if (uid != NULL) {
        amqp_table_entry_t *e = add_header(&o->p, "x-orderq-original-user-id");
        e->value.kind = AMQP_FIELD_KIND_UTF8;
        e->value.value.bytes = amqp_cstring_bytes(uid);
    }
    return 0;
}

static void pace(const struct replay *r, long long n);

/* Publish letter i of the page (no waiting). Returns 0, or OQ_EBROKER when
 * the connection failed (the letter is FAILED, why says why). */
static int send_letter(struct replay *r, struct flight *f, size_t i, amqp_pool_t *pool)
{
    const struct letter *l = &f->pg->l[i];
    struct outgoing o;
    char *why = f->why[i];
    size_t whylen = sizeof(f->why[i]);
    int rc = 0;
    why[0] = '\0';
    f->fate[i] = FAILED;
    if (prepare_letter(r, l, pool, &o, why, whylen) != 0) {
        f->fate[i] = SKIPPED;
        goto out;
    }
    int exists = exchange_exists(r, o.exchange, why, whylen);
    if (exists < 0) {
        rc = OQ_EBROKER;
        goto out;
    }
    if (exists == 0)
        goto out;
    if (oq_publish(r->pub, o.exchange, o.routing_key, 1, &o.p, o.body, o.len, &f->seq[i]) != 0) {
        snprintf(why, whylen, "the broker connection failed: %s",
                 oq_broker_error(r->b)[0] ? oq_broker_error(r->b) : "connection lost");
        rc = OQ_EBROKER;
        goto out;
    }
    f->fate[i] = PUBLISHED;
out:
    outgoing_clear(&o);
    return rc;
}

/* Mark the confirmed letters of the page replayed, in one statement.
 * Returns 0 or OQ_EDB. */
static int mark_replayed(struct replay *r, struct flight *f)
{
    struct oq_db_param p[PAGE_SIZE + 1];
    char sql[256 + PAGE_SIZE * 3];
    size_t n = 0, used;
    p[n++] = OQ_STR(r->as);
    used = (size_t)snprintf(sql, sizeof(sql),
                            "UPDATE dead_letter SET replay_count = replay_count + 1,"
                            " replayed_at = NOW(6), replayed_by = ? WHERE id IN (");
    for (size_t i = 0; i < f->n; i++)
        if (f->fate[i] == CONFIRMED) {
            p[n++] = OQ_INT(f->pg->l[i].id);
            used += (size_t)snprintf(sql + used, sizeof(sql) - used, "%s?", n > 2 ? "," : "");
        }
    snprintf(sql + used, sizeof(sql) - used, ")");
    if (n == 1)
        return 0;
    if (oq_db_execute(r->d->db, sql, p, n, NULL) != 0)
        return OQ_EDB;
    for (size_t i = 0; i < f->n; i++)
        if (f->fate[i] == CONFIRMED)
            f->fate[i] = REPLAYED;
    return 0;
}

/* Count the page's fates; a letter still PUBLISHED got no word (connection
 * lost or no confirm in time): failed, not marked. */
static void tally(struct replay *r, struct flight *f, const char *unsettled)
{
    for (size_t i = 0; i < f->n; i++) {
        long long id = f->pg->l[i].id;
        switch (f->fate[i]) {
        case REPLAYED:
            r->replayed++;
            break;
        case SKIPPED:
            r->skipped++;
            add_reason(r->skips, id, f->why[i]);
            break;
        case CONFIRMED: /* marking failed */
            snprintf(f->why[i], sizeof(f->why[i]),
                     "the broker took it, but marking it replayed failed");
            r->failed++;
            add_reason(r->failures, id, f->why[i]);
            break;
        case PUBLISHED:
            snprintf(f->why[i], sizeof(f->why[i]), "%s", unsettled);
            /* fall through */
        case FAILED:
            r->failed++;
            add_reason(r->failures, id, f->why[i]);
            break;
        }
    }
}

/* Replay a page: publish each letter (paced), wait for the confirms, mark
 * the confirmed ones. *done counts letters handled, *after is the id of
 * the last. Returns EX_OK, or an exit code that stops the run (said). */
static int replay_page(struct replay *r, const struct page *pg, amqp_pool_t *pool, long long *done,
                       long long *after, int tty)
{
    struct flight *f = calloc(1, sizeof(*f));
    const char *unsettled = "the broker connection failed before its confirm";
    int code = EX_OK, lost = 0;
    if (f == NULL)
        return EX_OSERR;
    f->pg = pg;
    r->flight = f;
    recycle_amqp_pool(pool);
    for (; f->n < pg->n && !cli_stop_signal && *done < r->total; (*done)++) {
        pace(r, *done);
        if (cli_stop_signal)
            break;
        f->n++;
        *after = pg->l[f->n - 1].id;
        if (send_letter(r, f, f->n - 1, pool) != 0) {
            lost = 1;
            (*done)++;
            break;
        }
        if (tty)
            cli_progress_draw(&r->bar, r->replayed + r->failed + r->skipped, 0);
    }
    if (!lost) {
        int rc = oq_publisher_wait(r->pub, CONFIRM_TIMEOUT_MS);
        if (rc == OQ_ETIMEOUT)
            unsettled = "no confirm from the broker within 30 s";
        lost = rc != 0;
    }
    if (f->n > 0 && mark_replayed(r, f) != 0) {
        cli_fail("dlq replay: the broker took letters %lld..%lld, but marking them replayed "
                 "failed: %s (their replay_count is behind by one)",
                 pg->l[0].id, pg->l[f->n - 1].id, oq_db_error(r->d->db));
        code = EX_UNAVAILABLE;
    }
    tally(r, f, unsettled);
    r->flight = NULL;
    if (code == EX_OK && lost) {
        /* the connection is gone or unsure: the next page gets a new one */
        char err[OQ_ERRLEN];
        replay_disconnect(r);
        if (replay_connect(r, err, sizeof(err)) != 0) {
            cli_fail("dlq replay: reconnecting to RabbitMQ: %s", err);
            code = EX_UNAVAILABLE;
        }
    }
    free(f);
    return code;
}

/* --rate: letter n goes no earlier than n / rate seconds after the start. */
static void pace(const struct replay *r, long long n)
{
    if (r->rate <= 0)
        return;
    int64_t due = r->start_ms + (int64_t)(n * 1000 / r->rate);
    int64_t now = oq_now_ms();
    if (due > now)
        oq_nap(due - now, &cli_stop_signal);
}

/* Work through the selection page by page. Returns an exit code. */
static int replay_all(struct replay *r)
{
    struct page *pg = calloc(1, sizeof(*pg));
    amqp_pool_t pool;
    long long done = 0, after = 0;
    int tty = isatty(STDERR_FILENO) && r->total > 0, code = EX_OK;

    if (pg == NULL)
        return EX_OSERR;
    init_amqp_pool(&pool, 4096);
    r->start_ms = oq_now_ms();
    cli_progress_start(&r->bar, r->total);
    while (code == EX_OK && !cli_stop_signal && done < r->total) {
        if ((code = fetch_page(r, after, 1, pg)) != EX_OK || pg->n == 0)
            break;
        code = replay_page(r, pg, &pool, &done, &after, tty);
    }
    if (tty)
        cli_progress_draw(&r->bar, r->replayed + r->failed + r->skipped, 1);
    page_clear(pg);
    free(pg);
    empty_amqp_pool(&pool);
    return code;
}

static void print_reasons_json(const char *name, const struct reasons *rs)
{
    printf(", \"%s\": [", name);
    for (size_t i = 0; i < rs->n; i++) {
        printf("%s{\"id\": %lld, \"reason\": ", i ? ", " : "", rs->v[i].id);
        oq_json_fputs(stdout, rs->v[i].why);
        fputc('}', stdout);
    }
    fputc(']', stdout);
}

static void print_reasons_text(const char *what, const struct reasons *rs, long long count)
{
    for (size_t i = 0; i < rs->n; i++)
        printf("  letter %lld %s: %s\n", rs->v[i].id, what, rs->v[i].why);
    if (count > (long long)rs->n)
        printf("  ... and %lld more %s\n", count - (long long)rs->n, what);
}

static void replay_summary(const struct replay *r)
{
    if (r->d->json) {
        printf("{\"selected\": %lld, \"replayed\": %lld, \"failed\": %lld, \"skipped\": %lld, "
               "\"interrupted\": %s",
               r->total, r->replayed, r->failed, r->skipped, cli_stop_signal ? "true" : "false");
        print_reasons_json("failures", r->failures);
        print_reasons_json("skips", r->skips);
        fputs("}\n", stdout);
        return;
    }
    printf("replayed %lld of %lld dead letters, failed %lld, skipped %lld\n", r->replayed, r->total,
           r->failed, r->skipped);
    print_reasons_text("failed", r->failures, r->failed);
    print_reasons_text("skipped", r->skips, r->skipped);
    if (cli_stop_signal)
        printf("stopped by signal %d: the rest were not replayed\n", (int)cli_stop_signal);
}

/* --dry-run: what would go where, from the same pages, without bodies. */
static int replay_dry_run(struct replay *r)
{
    static const char *const head[] = {"ID",       "QUEUE",       "EVENT_CODE",
                                       "EVENT_ID", "TO_EXCHANGE", "ROUTING_KEY"};
    static const char *const names[] = {"id",       "queue",      "event_code", "event_identifier",
                                        "exchange", "routing_key"};
    struct table t = {head, 6, NULL, 0, 0};
    struct page *pg = calloc(1, sizeof(*pg));
    long long after = 0, done = 0;
    int code = EX_OK;
    if (pg == NULL)
        return EX_OSERR;
    if (r->d->json)
        printf("{\"dry_run\": true, \"would_replay\": %lld, \"letters\": [", r->total);
    while (code == EX_OK && done < r->total) {
        if ((code = fetch_page(r, after, 0, pg)) != EX_OK || pg->n == 0)
            break;
        for (size_t i = 0; i < pg->n && done < r->total; i++, done++) {
            const struct letter *l = &pg->l[i];
            const char *exchange, *routing_key;
            char id[24];
            destination(r, l, &exchange, &routing_key);
            if (l->body_held != 0)
                exchange = routing_key = "(skipped: body in the held queue)";
            else if (l->not_ours && r->to_queue == NULL && !r->trust_headers)
                exchange = "(skipped: not from orderq, needs --to-queue or --trust-headers)";
            snprintf(id, sizeof(id), "%lld", l->id);
            const char *cells[] = {id,
                                   l->queue,
                                   l->event_code,
                                   l->event_id,
                                   exchange[0] ? exchange : "(default)",
                                   routing_key};
            after = l->id;
            if (r->d->json) {
                cells[4] = exchange;
                fputs(done ? ",\n " : "\n ", stdout);
                dlq_json_object(names, cells, 6, 1u);
            } else if (dlq_table_add(&t, cells) != 0)
                code = EX_OSERR;
        }
    }
    if (r->d->json)
        fputs("]}\n", stdout);
    else if (code == EX_OK) {
        if (t.rows > 0)
            dlq_table_print(&t, -1);
        printf("would replay %lld dead letters (dry run: nothing sent, nothing changed)\n",
               r->total);
    }
    dlq_table_free(&t);
    page_clear(pg);
    free(pg);
    return code;
}

/* Who replays, for replayed_by: --as, else the login name. */
static const char *login_name(void)
{
    const char *name = getlogin();
    if (name != NULL && *name != '\0')
        return name;
    const struct passwd *pw = getpwuid(geteuid());
    if (pw != NULL && pw->pw_name != NULL && *pw->pw_name != '\0')
        return pw->pw_name;
    name = getenv("USER");
    return name != NULL && *name != '\0' ? name : "unknown";
}

static int replay_options(struct dlq *d, struct replay *r)
{
    const char *v;
    r->limit = INT64_MAX;
    if ((v = cli_opt(d->ctx, "--limit")) != NULL &&
        dlq_parse_count(v, 1, INT64_MAX, &r->limit) != 0)
        return dlq_usage_fail(d->sub, "--limit: expected a whole number from 1, got \"%s\"", v);
    if ((v = cli_opt(d->ctx, "--rate")) != NULL && dlq_parse_count(v, 1, 1000000, &r->rate) != 0)
        return dlq_usage_fail(
            d->sub,
            "--rate: expected letters a second, a whole number from 1 to 1000000, "
            "got \"%s\"",
            v);
    r->to_queue = cli_opt(d->ctx, "--to-queue");
    if (r->to_queue != NULL && (r->to_queue[0] == '\0' || strlen(r->to_queue) > 255))
        return dlq_usage_fail(d->sub, "--to-queue: expected a queue name of 1 to 255 bytes");
    r->force_resend = cli_opt(d->ctx, "--force-resend") != NULL;
    r->trust_headers = cli_opt(d->ctx, "--trust-headers") != NULL;
    if (r->trust_headers && r->to_queue != NULL)
        return dlq_usage_fail(d->sub, "--trust-headers and --to-queue: expected one of them, "
                                      "not both (one says where a letter goes)");
    r->as = cli_opt(d->ctx, "--as") ? cli_opt(d->ctx, "--as") : login_name();
    if (r->as[0] == '\0' || strlen(r->as) > 191)
        return dlq_usage_fail(d->sub, "--as: expected a name of 1 to 191 bytes, got \"%s\"", r->as);
    return EX_OK;
}

int dlq_replay(struct dlq *d)
{
    struct replay r;
    char err[OQ_ERRLEN];
    long long count = 0;
    int code;

    memset(&r, 0, sizeof(r));
    r.d = d;
    if ((code = dlq_check_selection(d)) != EX_OK || (code = replay_options(d, &r)) != EX_OK)
        return code;
    dlq_where_from_filter(&r.w, &d->f);
    if ((code = dlq_selection_size(d, &r.w, &count, &r.max_id)) != EX_OK)
        return code;
    r.total = count < r.limit ? count : r.limit;
    if (cli_opt(d->ctx, "--dry-run") != NULL)
        return replay_dry_run(&r);
    r.failures = calloc(1, sizeof(*r.failures));
    r.skips = calloc(1, sizeof(*r.skips));
    if (oq_trust_own_user(d->ctx->cfg, &r.amqp_user) != 0)
        r.amqp_user = NULL; /* amqp_url does not parse: replay_connect says so */
    r.held_queue = oq_dead_letter_held_queue(d->ctx->cfg);
    if (r.failures == NULL || r.skips == NULL || r.held_queue == NULL) {
        code = EX_OSERR;
        goto out;
    }
    if (r.total > 0) {
        int rc = replay_connect(&r, err, sizeof(err));
        if (rc != 0) {
            cli_fail("dlq replay: %s", err);
            code = cli_exit_code(rc);
            goto out;
        }
    }
    cli_catch_stop_signals();
    code = replay_all(&r);
    replay_summary(&r);
    if (code == EX_OK && cli_stop_signal)
        code = 128 + (int)cli_stop_signal;
    else if (code == EX_OK && r.failed > 0)
        code = EX_UNAVAILABLE;
    else if (code == EX_OK && r.skipped > 0)
        code = EX_DATAERR;
out:
    replay_disconnect(&r);
    free(r.amqp_user);
    free(r.held_queue);
    reasons_free(r.failures);
    reasons_free(r.skips);
    return code;
}
