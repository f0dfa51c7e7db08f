/* common.c - text for orderq's error codes; JSON strings for --json output */
#include "orderq/common.h"

const char *oq_strerror(int err)
{
    switch (err) {
    case OQ_OK:
        return "ok";
    case OQ_ENOMEM:
        return "out of memory";
    case OQ_EINVAL:
        return "invalid input";
    case OQ_ECONFIG:
        return "bad configuration";
    case OQ_EIO:
        return "I/O error";
    case OQ_EBROKER:
        return "RabbitMQ error";
    case OQ_EDB:
        return "MySQL error";
    case OQ_EHTTP:
        return "HTTP error";
    case OQ_ENOTFOUND:
        return "not found";
    case OQ_EMISMATCH:
        return "differs from the configuration";
    case OQ_ETIMEOUT:
        return "timed out";
    case OQ_EINTR:
        return "interrupted";
    case OQ_EREFUSED:
        return "refused";
    default:
        return "unknown error";
    }
}

void oq_json_fputs(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}
