/* broker.c - one RabbitMQ connection: connect, log in, channels, errors */
#include "orderq/broker.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "orderq/config.h"
#include "orderq/log.h"
#include "orderq/url.h"

struct oq_broker {
    amqp_connection_state_t conn;
    char vhost[256];
    int last_code;
    int open;             /* logged in, channel 1 open */
    int tls;              /* amqps: the socket alone does not say what is readable */
    size_t node, n_nodes; /* which node of amqp_url this is connected to, of how many */
    char err[OQ_ERRLEN];
};

/* The node of amqp_url to try first: the last one that answered, moved on
 * past one whose connection broke. Shared by every connection of the
 * process, so the next reconnect of any of them starts where one worked. */
static atomic_size_t first_node;

static void describe_reply(amqp_rpc_reply_t r, const char *what, char *buf, size_t len, int *code)
{
    *code = 0;
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(buf, len, "%s: ok", what);
        break;
    case AMQP_RESPONSE_NONE:
        snprintf(buf, len, "%s: no reply from the broker", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(buf, len, "%s: %s", what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            const amqp_channel_close_t *m = r.reply.decoded;
            *code = m->reply_code;
            snprintf(buf, len, "%s: %.*s", what, (int)m->reply_text.len,
                     (const char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const amqp_connection_close_t *m = r.reply.decoded;
            snprintf(buf, len, "%s: connection closed by the broker: %.*s", what,
                     (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else {
            snprintf(buf, len, "%s: unexpected method 0x%08x from the broker", what,
                     (unsigned)r.reply.id);
        }
        break;
    }
}

int oq_broker_check(struct oq_broker *b, amqp_channel_t channel, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(b->conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        b->last_code = 0;
        return 0;
    }
    describe_reply(r, what, b->err, sizeof(b->err), &b->last_code);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};
        int code = b->last_code;
        if (amqp_send_method(b->conn, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != 0)
            return OQ_EBROKER;
        amqp_channel_open(b->conn, channel);
        if (amqp_get_rpc_reply(b->conn).reply_type != AMQP_RESPONSE_NORMAL)
            return OQ_EBROKER;
        b->last_code = code;
        return code == AMQP_NOT_FOUND             ? OQ_ENOTFOUND
               : code == AMQP_PRECONDITION_FAILED ? OQ_EMISMATCH
                                                  : OQ_EREFUSED;
    }
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_ok_t ok = {0};
        (void)amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    }
    b->open = 0;
    return OQ_EBROKER;
}

amqp_table_entry_t oq_amqp_entry_bool(const char *key, int value)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    e.value.value.boolean = value;
    return e;
}

amqp_table_entry_t oq_amqp_entry_text(const char *key, amqp_bytes_t value)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = value;
    return e;
}

amqp_table_entry_t oq_amqp_entry_i64(const char *key, int64_t value)
{
    amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = value;
    return e;
}

/* An amqps:// socket that verifies the broker: its certificate must chain
 * to amqp_ca (or the system's CAs) and name the host; with amqp_cert and
 * amqp_key, orderq shows a client certificate too. NULL with err set. */
static amqp_socket_t *tls_socket(amqp_connection_state_t conn, const struct oq_config *cfg,
                                 char *err, size_t errlen)
{
    amqp_socket_t *sock = amqp_ssl_socket_new(conn);
    const char *ca = cfg->amqp_ca[0] ? cfg->amqp_ca : OQ_SYSTEM_CA_FILE;
    int status = 0;
    if (sock == NULL) {
        snprintf(err, errlen, "out of memory creating a TLS socket");
        return NULL;
    }
    amqp_ssl_socket_set_verify_peer(sock, 1);
    amqp_ssl_socket_set_verify_hostname(sock, 1);
    if ((status = amqp_ssl_socket_set_cacert(sock, ca)) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "amqp_ca: cannot load the CA file %s: %s", ca,
                 amqp_error_string2(status));
        return NULL;
    }
    if (cfg->amqp_cert[0] != '\0' &&
        (status = amqp_ssl_socket_set_key(sock, cfg->amqp_cert, cfg->amqp_key)) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "amqp_cert / amqp_key: cannot load %s with its key %s: %s",
                 cfg->amqp_cert, cfg->amqp_key, amqp_error_string2(status));
        return NULL;
    }
    return sock;
}

/* The socket is owned by b->conn, freed with it. */
static amqp_socket_t *open_socket(struct oq_broker *b, const struct oq_config *cfg,
                                  const struct oq_amqp_url *u, char *err, size_t errlen)
{
    amqp_socket_t *sock = NULL;
    struct timeval tv = oq_ms_to_timeval(cfg->connect_timeout_ms);
    b->tls = u->ssl;
    if (u->ssl) {
        if ((sock = tls_socket(b->conn, cfg, err, errlen)) == NULL)
            return NULL;
    } else if ((sock = amqp_tcp_socket_new(b->conn)) == NULL) {
        snprintf(err, errlen, "out of memory creating a socket");
        return NULL;
    }
    int status = amqp_socket_open_noblock(sock, u->host, u->port, &tv);
    if (status == AMQP_STATUS_SSL_CONNECTION_FAILED ||
        status == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED ||
        status == AMQP_STATUS_SSL_PEER_VERIFY_FAILED) {
        snprintf(err, errlen,
                 "cannot connect to RabbitMQ at %s:%d over TLS: %s (the broker's certificate is "
                 "checked against amqp_ca: %s)",
                 u->host, u->port, amqp_error_string2(status),
                 cfg->amqp_ca[0] ? cfg->amqp_ca : "empty, the system's CAs");
        return NULL;
    }
    if (status != AMQP_STATUS_OK) {
        snprintf(err, errlen, "cannot connect to RabbitMQ at %s:%d: %s", u->host, u->port,
                 amqp_error_string2(status));
        return NULL;
    }
    return sock;
}

/* Connect and log in to one node. The socket is owned by b->conn. */
static int connect_node(struct oq_broker *b, const struct oq_config *cfg, const char *purpose,
                        const struct oq_amqp_url *u, char *err, size_t errlen)
{
    char conn_name[300];

    if ((b->conn = amqp_new_connection()) == NULL) {
        snprintf(err, errlen, "out of memory");
        return OQ_ENOMEM;
    }
    snprintf(b->vhost, sizeof(b->vhost), "%s", u->vhost);
    if (open_socket(b, cfg, u, err, errlen) == NULL)
        return OQ_EBROKER;
    struct timeval tv = oq_ms_to_timeval(cfg->connect_timeout_ms);
    amqp_set_handshake_timeout(b->conn, &tv);
    amqp_set_rpc_timeout(b->conn, &tv);

    snprintf(conn_name, sizeof(conn_name), "orderq %s %s", purpose, cfg->instance_id);
    amqp_table_entry_t caps[] = {
        oq_amqp_entry_bool("consumer_cancel_notify", 1),
        oq_amqp_entry_bool("publisher_confirms", 1),
        oq_amqp_entry_bool("basic.nack", 1),
        oq_amqp_entry_bool("connection.blocked", 1),
        oq_amqp_entry_bool("authentication_failure_close", 1),
    };
    amqp_table_entry_t props[] = {
        oq_amqp_entry_text("product", amqp_cstring_bytes("orderq")),
        oq_amqp_entry_text("version", amqp_cstring_bytes(ORDERQ_VERSION)),
        oq_amqp_entry_text("connection_name", amqp_cstring_bytes(conn_name)),
        {.key = amqp_cstring_bytes("capabilities"),
         .value = {.kind = AMQP_FIELD_KIND_TABLE,
                   .value.table = {(int)(sizeof(caps) / sizeof(caps[0])), caps}}},
    };
    amqp_table_t table = {(int)(sizeof(props) / sizeof(props[0])), props};
    amqp_rpc_reply_t r =
        amqp_login_with_properties(b->conn, u->vhost, 0, 131072, (int)cfg->heartbeat_s, &table,
                                   AMQP_SASL_METHOD_PLAIN, u->user, u->password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        int code = 0;
        char why[OQ_ERRLEN];
        describe_reply(r, "login", why, sizeof(why), &code);
        /* With TLS 1.3 a broker refuses a missing client certificate only
         * after the handshake, so it shows up here. */
        int no_cert = u->ssl && r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                      r.library_error == AMQP_STATUS_SSL_ERROR && cfg->amqp_cert[0] == '\0';
        snprintf(err, errlen, "RabbitMQ at %s:%d vhost %s as %s: %s%s", u->host, u->port, u->vhost,
                 u->user, why,
                 no_cert ? " (no client certificate was offered: a broker that requires one "
                           "refuses the connection; see amqp_cert and amqp_key)"
                         : "");
        return OQ_EBROKER;
    }
    amqp_channel_open(b->conn, 1);
    if (oq_broker_check(b, 1, "channel.open") != 0) {
        snprintf(err, errlen, "%s", b->err);
        return OQ_EBROKER;
    }
    b->open = 1;
    return 0;
}

/* Append "; why" (or "why" first) to the reasons of every node tried. */
static void add_reason(char *err, size_t errlen, const char *why)
{
    size_t used = strlen(err);
    if (used + 1 < errlen)
        snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", why);
}

int oq_broker_connect(const struct oq_config *cfg, const char *purpose, struct oq_broker **out,
                      char *err, size_t errlen)
{
    struct oq_amqp_nodes nodes;
    struct oq_broker *b = NULL;
    int rc = OQ_EBROKER;
    char why[OQ_ERRLEN];

    *out = NULL;
    if (oq_amqp_nodes_parse(cfg->amqp_url, &nodes, err, errlen) != 0)
        return OQ_ECONFIG;
    size_t start = atomic_load(&first_node) % nodes.n;
    if (errlen > 0)
        err[0] = '\0';
    /* Each node in turn, from the one that last worked: a node that is
     * down costs one refused connect (or connect_timeout_ms), no more. */
    for (size_t i = 0; i < nodes.n && rc != 0 && rc != OQ_ENOMEM; i++) {
        size_t k = (start + i) % nodes.n;
        oq_broker_drop(b, 1);
        if ((b = calloc(1, sizeof(*b))) == NULL) {
            rc = OQ_ENOMEM;
            snprintf(err, errlen, "out of memory");
            break;
        }
        b->node = k;
        b->n_nodes = nodes.n;
        rc = connect_node(b, cfg, purpose, &nodes.node[k], why, sizeof(why));
        if (rc != 0 && nodes.n > 1) {
            char tagged[OQ_ERRLEN + 32];
            snprintf(tagged, sizeof(tagged), "node %zu of %zu: %s", k + 1, nodes.n, why);
            add_reason(err, errlen, tagged);
        } else if (rc != 0)
            snprintf(err, errlen, "%s", why);
    }
    if (rc != 0)
        goto out;
    atomic_store(&first_node, b->node);
    if (nodes.n > 1) {
        char single[OQ_ERRLEN];
        const struct oq_amqp_url *u = &nodes.node[b->node];
        snprintf(single, sizeof(single), "%s://%s:%d", u->ssl ? "amqps" : "amqp", u->host, u->port);
        oq_info("%s: connected to RabbitMQ node %zu of %zu (%s, vhost %s)", purpose, b->node + 1,
                nodes.n, single, u->vhost);
    }
    *out = b;
    b = NULL;
out:
    oq_broker_drop(b, 1);
    oq_amqp_nodes_clear(&nodes);
    return rc;
}

void oq_broker_close(struct oq_broker *b)
{
    if (b == NULL)
        return;
    if (b->open) {
        amqp_channel_close(b->conn, 1, AMQP_REPLY_SUCCESS);
        amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(b->conn);
    free(b);
}

#define STOPPING_CLOSE_MS 500 /* a close's wait once stopping: the broker is near */

void oq_broker_close_stopping(struct oq_broker *b)
{
    if (b == NULL)
        return;
    /* connection.close alone closes the channels too: one reply to wait
     * for, and not long, so that a stop stays within its budget */
    if (b->open) {
        struct timeval tv = oq_ms_to_timeval(STOPPING_CLOSE_MS);
        amqp_set_rpc_timeout(b->conn, &tv);
        amqp_rpc_reply_t r = amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            oq_warn("closing the connection to RabbitMQ: no close-ok within %d ms; dropped "
                    "instead (RabbitMQ logs it as closed unexpectedly)",
                    STOPPING_CLOSE_MS);
    }
    amqp_destroy_connection(b->conn);
    free(b);
}

void oq_broker_drop(struct oq_broker *b, int failed)
{
    if (b == NULL)
        return;
    /* Its node failed: the next connect starts with the node after it
     * (unless another connection has already moved on). */
    size_t node = b->node;
    if (failed)
        atomic_compare_exchange_strong(&first_node, &node, (b->node + 1) % b->n_nodes);
    if (b->conn != NULL)
        amqp_destroy_connection(b->conn);
    free(b);
}

#define CLOSE_OK_QUIET_MS 20 /* nothing after a close-ok: it was not a body's last bytes */

/* The last frame RabbitMQ sends on a connection: connection.close-ok
 * (method frame on channel 0, 4 bytes: class 10, method 51; frame end).
 * Only heartbeats may follow it. */
static const unsigned char CLOSE_OK_FRAME[] = {1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 51, 0xCE};
static const unsigned char HEARTBEAT_FRAME[] = {8, 0, 0, 0, 0, 0, 0, 0xCE};

void oq_close_ok_watch_add(struct oq_close_ok_watch *w, const void *data, size_t n)
{
    size_t keep = sizeof(w->bytes);
    const unsigned char *in = data;
    if (n >= keep) {
        memcpy(w->bytes, in + n - keep, keep);
        w->len = keep;
        return;
    }
    if (w->len + n > keep) { /* drop the oldest */
        size_t drop = w->len + n - keep;
        memmove(w->bytes, w->bytes + drop, w->len - drop);
        w->len -= drop;
    }
    memcpy(w->bytes + w->len, in, n);
    w->len += n;
}

int oq_close_ok_watch_seen(const struct oq_close_ok_watch *w)
{
    size_t n = w->len, hb = sizeof(HEARTBEAT_FRAME), ok = sizeof(CLOSE_OK_FRAME);
    while (n >= ok + hb && memcmp(w->bytes + n - hb, HEARTBEAT_FRAME, hb) == 0)
        n -= hb;
    return n >= ok && memcmp(w->bytes + n - ok, CLOSE_OK_FRAME, ok) == 0;
}

/* Read and discard b's raw input (fd) until the broker's close-ok (see_close_ok:
 * the bytes are AMQP frames, not TLS records) followed by CLOSE_OK_QUIET_MS
 * of nothing, or until the broker closes it: 0. At the deadline (at most
 * STOPPING_CLOSE_MS away once *stop is set: the reject must still get
 * there, or an archived letter is archived again): OQ_ETIMEOUT. A socket
 * error: OQ_EBROKER. Heartbeats go on meanwhile: until its close-ok,
 * RabbitMQ ends a connection that misses them as abruptly as a FIN. */
static int drain_until_close_ok(struct oq_broker *b, int fd, int see_close_ok, int64_t deadline,
                                volatile sig_atomic_t *stop)
{
    char buf[65536];
    struct oq_close_ok_watch tail = {.len = 0};
    int64_t beat_ms = amqp_get_heartbeat(b->conn) * 1000LL / 2, last_beat = oq_now_ms();
    amqp_frame_t beat = {.frame_type = AMQP_FRAME_HEARTBEAT, .channel = 0};
    for (;;) {
        int64_t now = oq_now_ms();
        if (*stop && deadline > now + STOPPING_CLOSE_MS)
            deadline = now + STOPPING_CLOSE_MS;
        int64_t left = deadline - now;
        if (left <= 0)
            return OQ_ETIMEOUT;
        if (beat_ms > 0 && now - last_beat >= beat_ms) {
            (void)amqp_send_frame(b->conn, &beat);
            last_beat = now;
        }
        int close_ok = see_close_ok && oq_close_ok_watch_seen(&tail);
        int64_t wait = close_ok ? CLOSE_OK_QUIET_MS : 100; /* and *stop seen soon */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, (int)(left < wait ? left : wait));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return OQ_EBROKER;
        if (n == 0) {
            if (close_ok)
                return 0;
            continue;
        }
        ssize_t got = read(fd, buf, sizeof(buf));
        if (got == 0)
            return 0;
        if (got > 0)
            oq_close_ok_watch_add(&tail, buf, (size_t)got);
        else if (errno != EINTR && errno != EAGAIN)
            return OQ_EBROKER;
    }
}

int oq_broker_unreadable(amqp_rpc_reply_t reply)
{
    /* librabbitmq 0.11 (amqp_handle_input in amqp_connection.c) answers
     * BAD_AMQP_DATA both for a content header whose properties or table it
     * cannot decode (the message's fault) and for a frame longer than
     * frame_max or without its frame-end byte (a broken stream). The reply
     * holds only the status, and the connection is left in the same state
     * either way, so the two cannot be told apart here. Both count as
     * unreadable: a broken stream from a real broker over TCP (or TLS) does
     * not happen in practice, and its cost is one message dead-lettered
     * whole (replayable), whereas a message we cannot read, taken for a
     * broken stream, would come back at the head of its queue for ever. */
    if (reply.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION)
        return 0;
    return reply.library_error == AMQP_STATUS_INVALID_PARAMETER ||
           reply.library_error == AMQP_STATUS_BAD_AMQP_DATA;
}

int oq_broker_close_unreadable(struct oq_broker *b, int64_t timeout_ms, volatile sig_atomic_t *stop)
{
    amqp_connection_close_t close = {
        .reply_code = AMQP_REPLY_SUCCESS,
        .reply_text = amqp_cstring_bytes("orderq: a delivery it cannot read"),
    };
    int rc = 0;
    if (b == NULL)
        return 0;
    /* librabbitmq cannot read this connection's input any more (it stops at
     * the frame it cannot decode), so its close-ok is looked for in the raw
     * bytes. Our side stays open until then: RabbitMQ sends close-ok once
     * every channel has handled what came before the close (the reject),
     * whereas a FIN read before that ends the connection at once, its
     * channels with it, and a reject still in a channel's mailbox is lost
     * (the message comes back). Over TLS the raw bytes are records, so the
     * wait is for RabbitMQ's own close, min(heartbeat, 30) s after its
     * close-ok. */
    int64_t wait_ms = timeout_ms, started = oq_now_ms();
    if (b->tls) {
        int heartbeat = amqp_get_heartbeat(b->conn);
        wait_ms += (heartbeat > 0 && heartbeat < 30 ? heartbeat : 30) * 1000LL;
        oq_info("closing the connection without reading past the delivery it cannot read: "
                "over TLS this waits for RabbitMQ to close it (up to %lld s)",
                (long long)(wait_ms / 1000));
    }
    int fd = amqp_get_sockfd(b->conn);
    if (fd < 0 || amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_METHOD, &close) != 0)
        rc = OQ_EBROKER;
    else
        rc = drain_until_close_ok(b, fd, !b->tls, started + wait_ms, stop);
    if (rc == OQ_ETIMEOUT)
        oq_warn("closing the connection on a delivery it cannot read: the broker did not answer "
                "the close within %lld ms (connect_timeout_ms%s); dropped, so if the broker "
                "had not yet handled the reject, the message comes back once more",
                (long long)(oq_now_ms() - started), *stop ? ", cut short by the stop" : "");
    oq_broker_drop(b, 0);
    return rc;
}

amqp_connection_state_t oq_broker_conn(struct oq_broker *b)
{
    return b->conn;
}

int oq_broker_pollable_fd(struct oq_broker *b)
{
    return b->tls ? -1 : amqp_get_sockfd(b->conn);
}

const char *oq_broker_vhost(const struct oq_broker *b)
{
    return b->vhost;
}

const char *oq_broker_error(const struct oq_broker *b)
{
    return b->err;
}

int oq_broker_last_code(const struct oq_broker *b)
{
    return b->last_code;
}

const amqp_field_value_t *oq_amqp_header(const amqp_basic_properties_t *p, const char *key)
{
    size_t n = strlen(key);
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return NULL;
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (e->key.len == n && memcmp(e->key.bytes, key, n) == 0)
            return &e->value;
    }
    return NULL;
}

int oq_amqp_field_int(const amqp_field_value_t *v, int64_t *out)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        *out = v->value.i8;
        return 0;
    case AMQP_FIELD_KIND_U8:
        *out = v->value.u8;
        return 0;
    case AMQP_FIELD_KIND_I16:
        *out = v->value.i16;
        return 0;
    case AMQP_FIELD_KIND_U16:
        *out = v->value.u16;
        return 0;
    case AMQP_FIELD_KIND_I32:
        *out = v->value.i32;
        return 0;
    case AMQP_FIELD_KIND_U32:
        *out = v->value.u32;
        return 0;
    case AMQP_FIELD_KIND_I64:
        *out = v->value.i64;
        return 0;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        if (v->value.u64 > INT64_MAX)
            return OQ_EINVAL;
        *out = (int64_t)v->value.u64;
        return 0;
    default:
        return OQ_EINVAL;
    }
}
