/* fuzz_shopapi.c - the shop API's order document turned into event_data
 *
 * Whatever the shop answers, what comes out must be JSON that parses, is
 * strict UTF-8 (the decoder would dead-letter it otherwise), names the
 * order asked for and has an items array. */
#include <string.h>

#include "fuzz.h"
#include "orderq/event.h"
#include "orderq/json.h"
#include "orderq/shopapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *ed = NULL, why[512] = "", perr[256];
    int rc = oq_shopapi_order_to_event_data((const char *)data, size, "9200000217", &ed, why,
                                            sizeof(why));
    if (rc != 0) {
        FUZZ_CHECK(ed == NULL && why[0] != '\0', "refused without a reason");
        FUZZ_CHECK(oq_utf8_valid(why, strlen(why)), "the reason is not UTF-8");
        return 0;
    }
    FUZZ_CHECK(oq_utf8_valid(ed, strlen(ed)), "event_data is not UTF-8: %s", ed);
    yajl_val v = oq_json_parse(ed, perr, sizeof(perr));
    FUZZ_CHECK(v != NULL, "event_data does not parse: %s: %s", perr, ed);
    const char *id = oq_json_text(v, "order_id");
    FUZZ_CHECK(id != NULL && strcmp(id, "9200000217") == 0, "order_id lost");
    FUZZ_CHECK(oq_json_text(v, "currency") != NULL, "currency lost");
    FUZZ_CHECK(YAJL_IS_ARRAY(oq_json_member(v, "items")), "items is not an array");

    /* and the envelope around it decodes */
    size_t n = strlen(ed) + 128;
    char *body = malloc(n);
    snprintf(body, n,
             "{\"event_code\":\"order.processing\",\"event_identifier\":\"x\","
             "\"event_data\":%s}",
             ed);
    struct oq_event ev;
    char err[512];
    rc = oq_event_decode(body, strlen(body), NULL, &ev, err, sizeof(err));
    FUZZ_CHECK(rc == 0, "the envelope does not decode: %s", err);
    oq_event_clear(&ev);
    free(body);
    yajl_tree_free(v);
    free(ed);
    return 0;
}
