/* handler_probe.c - a drill event: fails as told, to rehearse retries and dead letters
 *
 *   {"event_code": "probe", "event_identifier": "drill-1",
 *    "event_data": {"fail": "transient", "fail_attempts": 2, "error": "SMTP 421"}}
 *
 * fails transiently on attempts 1 and 2 and succeeds on the third; its
 * only effect is its ledger row. "fail": "permanent" goes straight to the
 * dead letters; without fail_attempts it fails on every attempt. An
 * operator sends one with `orderq publish` to see the delay tiers and the
 * dead-letter store work on a live system; the system tests use it too.
 */
#include <stdio.h>
#include <string.h>

#include "orderq/event.h"
#include "orderq/handler.h"
#include "orderq/json.h"

static int prepare(void *state, const struct oq_event *ev, int64_t attempt, void **plan,
                   char *effect_key, size_t keylen, char *result, size_t resultlen, char *err,
                   size_t errlen)
{
    (void)state;
    (void)effect_key;
    (void)keylen;
    *plan = NULL;
    yajl_val fail = oq_json_member(ev->data, "fail");
    yajl_val times = oq_json_member(ev->data, "fail_attempts");
    yajl_val error = oq_json_member(ev->data, "error");
    const char *how = YAJL_IS_STRING(fail) ? YAJL_GET_STRING(fail) : "none";
    const char *why = YAJL_IS_STRING(error) ? YAJL_GET_STRING(error) : "the probe was told to fail";

    if (fail != NULL && !YAJL_IS_STRING(fail)) {
        snprintf(err, errlen, "event_data.fail must be a string: none, transient or permanent");
        return OQ_EINVAL;
    }
    if (times != NULL && !YAJL_IS_INTEGER(times)) {
        snprintf(err, errlen, "event_data.fail_attempts must be an integer");
        return OQ_EINVAL;
    }
    int failing = times == NULL || attempt <= YAJL_GET_INTEGER(times);
    if (strcmp(how, "none") == 0 || !failing) {
        snprintf(result, resultlen, "probe ok on attempt %lld", (long long)attempt);
        return 0;
    }
    snprintf(err, errlen, "%s (probe, attempt %lld)", why, (long long)attempt);
    if (strcmp(how, "transient") == 0)
        return OQ_EAGAIN;
    if (strcmp(how, "permanent") == 0)
        return OQ_EINVAL;
    snprintf(err, errlen, "event_data.fail is \"%s\"; expected none, transient or permanent", how);
    return OQ_EINVAL;
}

static int apply(void *state, struct oq_db *db, void *const *plans, size_t n, char *err,
                 size_t errlen)
{
    (void)state;
    (void)db;
    (void)plans;
    (void)n;
    (void)err;
    (void)errlen;
    return 0; /* the ledger row is the whole effect */
}

static void free_plan(void *plan)
{
    (void)plan;
}

int oq_handler_probe_new(struct oq_handler *out)
{
    *out = (struct oq_handler){
        .name = "probe",
        .event_code = "probe",
        .prepare = prepare,
        .apply = apply,
        .free_plan = free_plan,
    };
    return 0;
}
