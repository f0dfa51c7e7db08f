/* handlers.c - the handlers this build has, and which one takes a delivery */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/config.h"
#include "orderq/handler.h"

int oq_handlers_new(const struct oq_config *cfg, struct oq_handler **handlers, size_t *n, char *err,
                    size_t errlen)
{
    enum { MAX_HANDLERS = 6 };
    struct oq_handler *list = calloc(MAX_HANDLERS, sizeof(*list));
    size_t k = 0;
    int rc = OQ_ENOMEM;

    *handlers = NULL;
    *n = 0;
    snprintf(err, errlen, "out of memory");
    if (list == NULL)
        return OQ_ENOMEM;
    if ((rc = oq_handler_coupon_new(cfg, &list[k], err, errlen)) != 0)
        goto fail;
    k++;
    if ((rc = oq_handler_coupon_mail_new(cfg, &list[k], err, errlen)) != 0)
        goto fail;
    k++;
    if ((rc = oq_handler_invoice_mail_new(cfg, "invoice.created", &list[k], err, errlen)) != 0)
        goto fail;
    k++;
    if ((rc = oq_handler_invoice_mail_new(cfg, "invoice.updated", &list[k], err, errlen)) != 0)
        goto fail;
    k++;
    if ((rc = oq_handler_probe_new(&list[k])) != 0)
        goto fail;
    k++;
    if (cfg->webhooks_file[0] != '\0') {
        if ((rc = oq_handler_webhook_new(cfg, &list[k], err, errlen)) != 0)
            goto fail;
        k++;
    }
    *handlers = list;
    *n = k;
    return 0;
fail:
    oq_handlers_free(list, k);
    return rc;
}

void oq_handlers_free(struct oq_handler *handlers, size_t n)
{
    for (size_t i = 0; handlers && i < n; i++)
        if (handlers[i].free_state)
            handlers[i].free_state(handlers[i].state);
    free(handlers);
}

const struct oq_handler *oq_handler_find(const struct oq_handler *handlers, size_t n,
                                         const char *queue, const char *event_code)
{
    for (size_t i = 0; queue != NULL && i < n; i++)
        if (handlers[i].queue != NULL && strcmp(handlers[i].queue, queue) == 0)
            return &handlers[i];
    for (size_t i = 0; i < n; i++)
        if (handlers[i].queue == NULL && strcmp(handlers[i].event_code, event_code) == 0)
            return &handlers[i];
    return NULL;
}
