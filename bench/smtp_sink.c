/* smtp_sink.c - a light SMTP server that accepts every mail (bench/latency, bench/mail_rate)
 *
 * Single-threaded, poll() over many connections on 127.0.0.1, so that the
 * mail benchmarks measure the sender, not the receiver (MailDev's Node
 * process is the bottleneck here). It speaks enough SMTP for libcurl and
 * orderq's mailer: EHLO/HELO (PIPELINING, 8BITMIME), MAIL, RCPT, DATA with
 * dot-unstuffing and an end marker that may arrive split across reads,
 * RSET, NOOP, QUIT. Buffers are bounded per connection: a command line
 * longer than LINE_MAX is refused, the message text is streamed (discarded,
 * or written to --save DIR) and never held whole.
 *
 * Per accepted mail one line "<first recipient> <accept unix us>" goes to
 * --log FILE, flushed once per poll round (no fsync: a benchmark's log, not
 * a mail store). The accept time is taken when the end marker is read, so
 * it is early by the time the "250" takes to reach the client (microseconds
 * on loopback). On SIGTERM or SIGINT it prints {"mails": n} and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE       64
#define EXIT_UNAVAILABLE 69
#define MAX_CONNS        1024
#define LINE_MAX_BYTES   1024 /* RFC 5321's 512 for commands, with room */
#define OUT_MAX          4096
#define RCPT_MAX         320

/* Where a DATA reader is in "\r\n.\r\n" and in dot-stuffing. */
enum data_state { D_BOL, D_BOL_DOT, D_BOL_DOT_CR, D_MID, D_CR };

struct conn {
    int fd;
    int in_data, closing;
    enum data_state ds;
    char in[LINE_MAX_BYTES];
    size_t in_len;
    int skip_line; /* discarding the rest of an over-long command line */
    char out[OUT_MAX];
    size_t out_len;
    char rcpt[RCPT_MAX]; /* the first recipient of the current mail */
    int has_mail_from;
    FILE *save; /* the message being written to --save DIR */
    char save_tmp[4096];
};

struct sink {
    int listen_fd;
    struct conn *conns[MAX_CONNS];
    size_t nconns;
    FILE *log;
    const char *save_dir;
    unsigned long long mails;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int64_t unix_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: orderq_bench_smtp_sink --port P [--log FILE] [--save DIR]\n"
                "Accepts every mail on 127.0.0.1:P (P 0: any free port, printed as\n"
                "{\"port\": p} on stdout). --log: one line \"<first recipient> <accept unix us>\"\n"
                "per mail. --save: each mail's text, unstuffed, as DIR/<n>.eml (for tests).\n"
                "SIGTERM prints {\"mails\": n}. Exit 64 on a bad argument, 69 when the port\n"
                "cannot be bound.\n");
}

/* Queue a reply. The caller reads no more input while out is nearly full. */
static void reply(struct conn *c, const char *text)
{
    size_t n = strlen(text);
    if (c->out_len + n <= sizeof(c->out)) {
        memcpy(c->out + c->out_len, text, n);
        c->out_len += n;
    }
}

static int out_nearly_full(const struct conn *c)
{
    return c->out_len + 256 > sizeof(c->out);
}

static void reset_mail(struct conn *c)
{
    c->rcpt[0] = '\0';
    c->has_mail_from = 0;
    if (c->save != NULL) {
        fclose(c->save);
        c->save = NULL;
        unlink(c->save_tmp);
    }
}

/* "<addr>" of "TO:<addr>" (parameters after it ignored), into out. */
static int path_arg(const char *arg, char *out, size_t len)
{
    const char *lt = strchr(arg, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (lt == NULL || gt == NULL || (size_t)(gt - lt - 1) >= len)
        return -1;
    memcpy(out, lt + 1, (size_t)(gt - lt - 1));
    out[gt - lt - 1] = '\0';
    return 0;
}

static void start_data(struct sink *s, struct conn *c)
{
    if (s->save_dir != NULL) {
        snprintf(c->save_tmp, sizeof(c->save_tmp), "%s/.tmp-%d", s->save_dir, c->fd);
        c->save = fopen(c->save_tmp, "wb");
        if (c->save == NULL) {
            reply(c, "451 cannot save the message\r\n");
            return;
        }
    }
    c->in_data = 1;
    c->ds = D_BOL;
    reply(c, "354 end with <CRLF>.<CRLF>\r\n");
}

static void command(struct sink *s, struct conn *c, char *line)
{
    char verb[8] = "";
    size_t vlen = strcspn(line, " ");
    if (vlen < sizeof(verb)) {
        memcpy(verb, line, vlen);
        verb[vlen] = '\0';
    }
    const char *arg = line + vlen + (line[vlen] == ' ');
    if (strcasecmp(verb, "EHLO") == 0) {
        reset_mail(c);
        reply(c, "250-orderq-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
    } else if (strcasecmp(verb, "HELO") == 0) {
        reset_mail(c);
        reply(c, "250 orderq-bench-sink\r\n");
    } else if (strcasecmp(verb, "MAIL") == 0 && strncasecmp(arg, "FROM:", 5) == 0) {
        reset_mail(c);
        c->has_mail_from = 1;
        reply(c, "250 OK\r\n");
    } else if (strcasecmp(verb, "RCPT") == 0 && strncasecmp(arg, "TO:", 3) == 0) {
        char to[RCPT_MAX];
        if (!c->has_mail_from)
            reply(c, "503 MAIL first\r\n");
        else if (path_arg(arg + 3, to, sizeof(to)) != 0 || to[0] == '\0')
            reply(c, "501 expected TO:<address>\r\n");
        else {
            if (c->rcpt[0] == '\0')
                snprintf(c->rcpt, sizeof(c->rcpt), "%s", to);
            reply(c, "250 OK\r\n");
        }
    } else if (strcasecmp(verb, "DATA") == 0) {
        if (c->rcpt[0] == '\0')
            reply(c, "503 RCPT first\r\n");
        else
            start_data(s, c);
    } else if (strcasecmp(verb, "RSET") == 0) {
        reset_mail(c);
        reply(c, "250 OK\r\n");
    } else if (strcasecmp(verb, "NOOP") == 0) {
        reply(c, "250 OK\r\n");
    } else if (strcasecmp(verb, "QUIT") == 0) {
        reply(c, "221 bye\r\n");
        c->closing = 1;
    } else {
        reply(c, "502 not implemented\r\n");
    }
}

static void end_of_data(struct sink *s, struct conn *c)
{
    char name[4096];
    s->mails++;
    if (s->log != NULL)
        fprintf(s->log, "%s %" PRId64 "\n", c->rcpt, unix_us());
    if (c->save != NULL) {
        int ok = fclose(c->save) == 0;
        c->save = NULL;
        snprintf(name, sizeof(name), "%s/%llu.eml", s->save_dir, s->mails);
        if (!ok || rename(c->save_tmp, name) != 0)
            fprintf(stderr, "orderq_bench_smtp_sink: saving %s: %s\n", name, strerror(errno));
    }
    c->in_data = 0;
    c->rcpt[0] = '\0';
    c->has_mail_from = 0;
    reply(c, "250 OK accepted\r\n");
}

static void emit(struct conn *c, const char *bytes, size_t n)
{
    if (c->save != NULL)
        fwrite(bytes, 1, n, c->save);
}

/* Feed message bytes through the end-marker and unstuffing state machine
 * (RFC 5321 4.5.2: a line's leading '.' is dropped; "." alone ends it).
 * The state carries over reads, so a marker split anywhere is found.
 * Returns the bytes consumed: all of them, or up to the end marker. */
static size_t data_bytes(struct sink *s, struct conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        switch (c->ds) {
        case D_BOL:
            if (ch == '.')
                c->ds = D_BOL_DOT;
            else if (ch == '\r')
                c->ds = D_CR;
            else {
                emit(c, &ch, 1);
                c->ds = D_MID;
            }
            break;
        case D_BOL_DOT:
            if (ch == '\r')
                c->ds = D_BOL_DOT_CR;
            else {
                emit(c, &ch, 1); /* the stuffed dot is dropped */
                c->ds = D_MID;
            }
            break;
        case D_BOL_DOT_CR:
            if (ch == '\n') {
                end_of_data(s, c);
                return i + 1;
            }
            emit(c, "\r", 1); /* ".\rx": not the marker */
            c->ds = D_MID;
            i--; /* read ch again in D_MID */
            break;
        case D_MID:
            if (ch == '\r')
                c->ds = D_CR;
            else
                emit(c, &ch, 1);
            break;
        case D_CR:
            if (ch == '\n') {
                emit(c, "\r\n", 2);
                c->ds = D_BOL;
            } else if (ch == '\r') {
                emit(c, "\r", 1);
            } else {
                emit(c, "\r", 1);
                emit(c, &ch, 1);
                c->ds = D_MID;
            }
            break;
        }
    }
    return n;
}

/* Handle what is in c->in: commands line by line (pipelined ones too), or
 * message text. Stops while the reply buffer is nearly full. */
static void process(struct sink *s, struct conn *c)
{
    size_t pos = 0;
    while (pos < c->in_len && !c->closing && !out_nearly_full(c)) {
        if (c->in_data) {
            pos += data_bytes(s, c, c->in + pos, c->in_len - pos);
            continue;
        }
        char *nl = memchr(c->in + pos, '\n', c->in_len - pos);
        if (nl == NULL) {
            if (pos == 0 && c->in_len == sizeof(c->in)) { /* a line longer than the buffer */
                c->skip_line = 1;
                c->in_len = 0;
            }
            break;
        }
        size_t end = (size_t)(nl - c->in);
        char *line = c->in + pos;
        *nl = '\0';
        if (end > pos && nl[-1] == '\r')
            nl[-1] = '\0';
        pos = end + 1;
        if (c->skip_line) {
            c->skip_line = 0;
            reply(c, "500 line too long\r\n");
        } else {
            command(s, c, line);
        }
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
}

static void drop(struct sink *s, size_t k)
{
    struct conn *c = s->conns[k];
    reset_mail(c);
    close(c->fd);
    free(c);
    s->conns[k] = s->conns[--s->nconns];
}

static void accept_all(struct sink *s)
{
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct conn *c = s->nconns < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        reply(c, "220 orderq-bench-sink ESMTP\r\n");
        s->conns[s->nconns++] = c;
    }
}

/* Read, process and write for one connection. Returns -1 to drop it. */
static int serve(struct sink *s, struct conn *c, short revents)
{
    if ((revents & (POLLIN | POLLHUP | POLLERR)) && !out_nearly_full(c)) {
        if (c->in_data && c->in_len == 0) {
            char buf[16384]; /* message text streams through, never held */
            ssize_t n = read(c->fd, buf, sizeof(buf));
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                return -1;
            size_t used = n > 0 ? data_bytes(s, c, buf, (size_t)n) : 0;
            if (n > 0 && used < (size_t)n) { /* pipelined commands after the marker */
                size_t rest = (size_t)n - used;
                if (rest > sizeof(c->in))
                    return -1;
                memcpy(c->in, buf + used, rest);
                c->in_len = rest;
            }
        } else if (c->in_len < sizeof(c->in)) {
            ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                return -1;
            if (n > 0)
                c->in_len += (size_t)n;
        }
    }
    /* Commands held back while the replies were full go on once they are
     * written: no new input may come to wake us for them. */
    for (;;) {
        size_t before = c->in_len;
        process(s, c);
        if (c->out_len > 0) {
            ssize_t n = write(c->fd, c->out, c->out_len);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
            if (n > 0) {
                memmove(c->out, c->out + n, c->out_len - (size_t)n);
                c->out_len -= (size_t)n;
            }
        }
        if (c->closing || c->out_len > 0 || c->in_len == 0 || c->in_len == before)
            break;
    }
    return c->closing && c->out_len == 0 ? -1 : 0;
}

static int listen_on(long port, int *out_port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t alen = sizeof(a);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 512) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *out_port = ntohs(a.sin_port);
    return fd;
}

static void parse_args(int argc, char **argv, long *port, const char **log, const char **save)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"log", required_argument, NULL, 'l'},
        {"save", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    char *end = NULL;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            errno = 0;
            *port = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || *port < 0 || *port > 65535) {
                fprintf(stderr, "orderq_bench_smtp_sink: --port: expected 0 to 65535, got \"%s\"\n",
                        optarg);
                exit(EXIT_USAGE);
            }
            break;
        case 'l':
            *log = optarg;
            break;
        case 's':
            *save = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            fprintf(stderr, "orderq_bench_smtp_sink: %s: unknown option or missing value\n",
                    argv[optind - 1]);
            usage(stderr);
            exit(EXIT_USAGE);
        }
    }
    if (*port < 0 || optind < argc) {
        fprintf(stderr, "orderq_bench_smtp_sink: %s\n",
                *port < 0 ? "--port is required" : "unexpected argument");
        exit(EXIT_USAGE);
    }
}

int main(int argc, char **argv)
{
    static struct sink s;
    static struct pollfd fds[MAX_CONNS + 1];
    long port = -1;
    int bound = 0;
    const char *log_path = NULL;

    parse_args(argc, argv, &port, &log_path, &s.save_dir);
    if (log_path != NULL && (s.log = fopen(log_path, "w")) == NULL) {
        fprintf(stderr, "orderq_bench_smtp_sink: --log %s: %s\n", log_path, strerror(errno));
        return EXIT_USAGE;
    }
    if ((s.listen_fd = listen_on(port, &bound)) < 0) {
        fprintf(stderr, "orderq_bench_smtp_sink: --port %ld: cannot listen on 127.0.0.1: %s\n",
                port, strerror(errno));
        return EXIT_UNAVAILABLE;
    }
    if (port == 0) {
        printf("{\"port\": %d}\n", bound);
        fflush(stdout);
    }
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    while (!stop) {
        fds[0] = (struct pollfd){.fd = s.listen_fd, .events = POLLIN};
        for (size_t k = 0; k < s.nconns; k++) {
            struct conn *c = s.conns[k];
            fds[k + 1] = (struct pollfd){
                .fd = c->fd,
                .events = (short)((out_nearly_full(c) ? 0 : POLLIN) | (c->out_len ? POLLOUT : 0))};
        }
        size_t n = s.nconns;
        if (poll(fds, n + 1, 1000) < 0)
            continue;                /* EINTR: a signal, checked above */
        for (size_t k = n; k-- > 0;) /* backwards: drop() moves the last one here */
            if (fds[k + 1].revents != 0 && serve(&s, s.conns[k], fds[k + 1].revents) != 0)
                drop(&s, k);
        if (fds[0].revents & POLLIN)
            accept_all(&s);
        if (s.log != NULL)
            fflush(s.log); /* once per round, so a reader sees mails within a poll */
    }
    while (s.nconns > 0)
        drop(&s, s.nconns - 1);
    if (s.log != NULL)
        fclose(s.log);
    close(s.listen_fd);
    printf("{\"mails\": %llu}\n", s.mails);
    return 0;
}
