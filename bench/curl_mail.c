/* curl_mail.c - the bare libcurl loop orderq's mail rate is compared with (bench/mail_rate, row 6)
 *
 * N mails over C connections: C threads, each with one easy handle that
 * keeps its connection from mail to mail, taking the next mail from a
 * shared counter until N are sent. By default each mail is built as
 * orderq's mailer builds a coupon mail (src/mailer_smtp.c): curl's MIME
 * API, multipart/alternative, the rendered templates/coupon.txt and
 * coupon.html as base64 parts, the same headers, about 1.6 kB on the wire;
 * with --message FILE, the file's bytes are sent as they are (curl
 * dot-stuffs them). Each mail has its own recipient
 * (bare-<n>@bench.example). What it leaves out, against orderq: the
 * database (lease and sent marks), the broker and template rendering, so
 * orderq / this is what those cost per mail. seconds runs from the first
 * connect to the last 250, so it includes C connection set-ups.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE       64
#define EXIT_UNAVAILABLE 69
#define MAX_CONNECTIONS  256

/* templates/coupon.txt and coupon.html as orderq renders them for a
 * customer (CRLF, the canonical form of a text part). */
static const char coupon_text[] =
    "Hello Customer 12345,\r\n\r\nthank you for your order 9200012345. It earned you a coupon:\r\n"
    "\r\n    MUG-SMZGLW66LKXZ\r\n\r\nIt takes $10.00 off your next order and is valid until "
    "2027-01-01.\r\nEnter the code at checkout.\r\n\r\nSee you soon!\r\n";
static const char coupon_html[] =
    "<!DOCTYPE html>\r\n<html>\r\n<body style=\"font-family: sans-serif; color: #222;\">\r\n"
    "<p>Hello Customer 12345,</p>\r\n<p>thank you for your order 9200012345. It earned you a "
    "coupon:</p>\r\n<p style=\"font-size: 1.6em; font-weight: bold; letter-spacing: 0.1em;\">"
    "MUG-SMZGLW66LKXZ</p>\r\n<p>It takes <strong>$10.00</strong> off your next order and is "
    "valid until 2027-01-01.\r\nEnter the code at checkout.</p>\r\n<p>See you soon!</p>\r\n"
    "</body>\r\n</html>\r\n";

struct job {
    const char *url;
    long long count;
    atomic_llong next, sent;
    const char *message; /* --message FILE's bytes, or NULL */
    size_t message_len;
    atomic_int failed;
    char error[CURL_ERROR_SIZE + 128];
    pthread_mutex_t error_lock;
};

struct upload {
    const char *p;
    size_t left;
};

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: orderq_bench_curl_mail --url smtp://127.0.0.1:P --count N --connections C\n"
            "                              [--message FILE]\n"
            "Sends N mails over C reused connections (one thread and easy handle each):\n"
            "a coupon mail as orderq renders it, or FILE as it is. Prints\n"
            "{\"mails\", \"seconds\", \"per_second\"}. Exit 1 when a mail was refused, 64 on a\n"
            "bad argument, 69 when the server cannot be reached.\n");
}

static long long int_arg(const char *flag, const char *text, long long min, long long max)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr,
                "orderq_bench_curl_mail: %s: expected an integer from %lld to %lld, got \"%s\"\n",
                flag, min, max, text);
        exit(EXIT_USAGE);
    }
    return v;
}

static size_t read_upload(char *buf, size_t size, size_t n, void *ctx)
{
    struct upload *u = ctx;
    size_t len = size * n < u->left ? size * n : u->left;
    memcpy(buf, u->p, len);
    u->p += len;
    u->left -= len;
    return len;
}

static void fail(struct job *j, int unreachable, const char *text)
{
    pthread_mutex_lock(&j->error_lock);
    if (!atomic_load(&j->failed))
        snprintf(j->error, sizeof(j->error), "%s", text);
    atomic_store(&j->failed, unreachable ? 2 : 1);
    pthread_mutex_unlock(&j->error_lock);
}

/* The coupon mail's MIME body (as build_body in src/mailer_smtp.c). */
static curl_mime *coupon_body(CURL *c)
{
    curl_mime *alt = curl_mime_init(c);
    const char *parts[][2] = {{coupon_text, "text/plain; charset=utf-8"},
                              {coupon_html, "text/html; charset=utf-8"}};
    for (size_t i = 0; alt != NULL && i < 2; i++) {
        curl_mimepart *part = curl_mime_addpart(alt);
        if (part == NULL || curl_mime_data(part, parts[i][0], CURL_ZERO_TERMINATED) != CURLE_OK ||
            curl_mime_type(part, parts[i][1]) != CURLE_OK ||
            curl_mime_encoder(part, "base64") != CURLE_OK) {
            curl_mime_free(alt);
            return NULL;
        }
    }
    return alt;
}

static struct curl_slist *coupon_headers(long long n, const char *to)
{
    char date[64], buf[512];
    time_t now = time(NULL);
    struct tm tm;
    struct curl_slist *h = NULL, *t;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S +0000", &tm);
    const char *fixed[] = {date, "From: \"Mug Shop\" <shop@mugs.example>",
                           "Subject: Your coupon MUG-SMZGLW66LKXZ: $10.00 off your next order",
                           "Content-Type: multipart/alternative"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if ((t = curl_slist_append(h, fixed[i])) != NULL)
            h = t;
    snprintf(buf, sizeof(buf), "To: \"Customer %lld\" <%s>", n, to);
    if ((t = curl_slist_append(h, buf)) != NULL)
        h = t;
    snprintf(buf, sizeof(buf), "Message-ID: <%032llx.coupon_mail@mugs.example>", n);
    if ((t = curl_slist_append(h, buf)) != NULL)
        h = t;
    snprintf(buf, sizeof(buf), "X-Orderq-Event: bare_%lld_processing_1_14", n);
    if ((t = curl_slist_append(h, buf)) != NULL)
        h = t;
    return h;
}

/* One mail on c (its connection kept from the last). Returns 0 or -1. */
static int send_one(struct job *j, CURL *c, long long n)
{
    char to[128], errbuf[CURL_ERROR_SIZE] = "", text[sizeof(j->error)];
    struct curl_slist *rcpt = NULL, *headers = NULL;
    curl_mime *mime = NULL;
    struct upload up = {j->message, j->message_len};
    long code = 0;
    int rc = -1;

    snprintf(to, sizeof(to), "<bare-%08lld@bench.example>", n);
    curl_easy_reset(c); /* keeps the connection, drops the last mail's options */
    if ((rcpt = curl_slist_append(NULL, to)) == NULL)
        goto out;
    curl_easy_setopt(c, CURLOPT_URL, j->url);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, "<shop@mugs.example>");
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (j->message != NULL) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_upload);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)j->message_len);
    } else {
        char addr[128];
        snprintf(addr, sizeof(addr), "%.*s", (int)strlen(to) - 2, to + 1);
        if ((headers = coupon_headers(n, addr)) == NULL || (mime = coupon_body(c)) == NULL)
            goto out;
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    }
    CURLcode res = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (res != CURLE_OK || code != 250) {
        snprintf(text, sizeof(text), "mail %lld to %s: %s (reply %ld)", n, j->url,
                 errbuf[0] ? errbuf : curl_easy_strerror(res), code);
        fail(j, res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST, text);
        goto out;
    }
    rc = 0;
out:
    curl_mime_free(mime);
    curl_slist_free_all(headers);
    curl_slist_free_all(rcpt);
    return rc;
}

static void *sender(void *arg)
{
    struct job *j = arg;
    CURL *c = curl_easy_init();
    if (c == NULL) {
        fail(j, 0, "curl_easy_init failed");
        return NULL;
    }
    for (;;) {
        long long n = atomic_fetch_add(&j->next, 1);
        if (n >= j->count || atomic_load(&j->failed) || send_one(j, c, n) != 0)
            break;
        atomic_fetch_add(&j->sent, 1);
    }
    curl_easy_cleanup(c);
    return NULL;
}

/* The whole of path, malloc'd. Returns 0 or -1 (errno set). */
static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int rc = -1;
    if (f == NULL)
        return -1;
    for (;;) {
        if (n == cap) {
            char *more = realloc(buf, cap = cap ? cap * 2 : 65536);
            if (more == NULL)
                goto out;
            buf = more;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        goto out;
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"count", required_argument, NULL, 'n'},
        {"connections", required_argument, NULL, 'c'},
        {"message", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct job j;
    pthread_t threads[MAX_CONNECTIONS];
    long long connections = 0;
    const char *message_path = NULL;
    char *message = NULL;
    int opt, started = 0;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'u':
            j.url = optarg;
            break;
        case 'n':
            j.count = int_arg("--count", optarg, 1, 100000000);
            break;
        case 'c':
            connections = int_arg("--connections", optarg, 1, MAX_CONNECTIONS);
            break;
        case 'm':
            message_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "orderq_bench_curl_mail: %s: unknown option or missing value\n",
                    argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *missing = !j.url         ? "--url"
                          : !j.count     ? "--count"
                          : !connections ? "--connections"
                                         : NULL;
    if (missing != NULL || optind < argc) {
        fprintf(stderr, "orderq_bench_curl_mail: %s%s\n", missing ? missing : argv[optind],
                missing ? " is required" : ": unexpected argument");
        return EXIT_USAGE;
    }
    CURLU *u = curl_url();
    char *scheme = NULL;
    int bad_url = u == NULL || curl_url_set(u, CURLUPART_URL, j.url, 0) != CURLUE_OK ||
                  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
                  strcmp(scheme, "smtp") != 0;
    curl_free(scheme);
    curl_url_cleanup(u);
    if (bad_url) {
        fprintf(stderr, "orderq_bench_curl_mail: --url: expected smtp://HOST:PORT, got \"%s\"\n",
                j.url);
        return EXIT_USAGE;
    }
    if (message_path != NULL && read_file(message_path, &message, &j.message_len) != 0) {
        fprintf(stderr, "orderq_bench_curl_mail: --message %s: %s\n", message_path,
                strerror(errno));
        return EXIT_USAGE;
    }
    j.message = message;
    pthread_mutex_init(&j.error_lock, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int64_t start = mono_ns();
    for (; started < connections; started++)
        if (pthread_create(&threads[started], NULL, sender, &j) != 0) {
            fail(&j, 0, "cannot start a thread");
            break;
        }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    double s = (double)(mono_ns() - start) / 1e9;
    long long sent = atomic_load(&j.sent);
    printf("{\"mails\": %lld, \"seconds\": %.3f, \"per_second\": %.0f}\n", sent, s,
           s > 0 ? (double)sent / s : 0.0);
    curl_global_cleanup();
    free(message);
    if (atomic_load(&j.failed)) {
        fprintf(stderr, "orderq_bench_curl_mail: %s\n", j.error);
        return atomic_load(&j.failed) == 2 ? EXIT_UNAVAILABLE : 1;
    }
    return 0;
}
