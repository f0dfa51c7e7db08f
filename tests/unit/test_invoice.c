/* test_invoice.c - invoice events read and checked; the lines as the mail shows them */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "orderq/invoice.h"

static const char issue_example[] =
    "{\"invoice_id\": \"501\", \"increment_id\": \"INV-000501\", \"order_id\": \"9200000217\","
    " \"currency\": \"USD\", \"customer\": {\"email\": \"ann@example.com\", \"name\": \"Ann\"},"
    " \"items\": [{\"sku\": \"MUG-1\", \"name\": \"Mug\", \"qty\": 2, \"price\": \"30.00\"}],"
    " \"totals\": {\"subtotal\": \"60.00\", \"tax\": \"4.80\", \"shipping\": \"5.00\","
    " \"grand_total\": \"69.80\"}}";

static yajl_val tree(const char *json)
{
    char err[128];
    yajl_val v = yajl_tree_parse(json, err, sizeof(err));
    if (v == NULL)
        fail_msg("test JSON does not parse: %s: %s", err, json);
    return v;
}

static void the_documented_example_is_read(void **state)
{
    (void)state;
    struct oq_invoice inv;
    char err[256], *text = NULL, *html = NULL;
    yajl_val v = tree(issue_example);
    assert_int_equal(oq_invoice_parse(v, &inv, err, sizeof(err)), 0);
    assert_string_equal(inv.invoice_id, "501");
    assert_string_equal(inv.increment_id, "INV-000501");
    assert_string_equal(inv.order_id, "9200000217");
    assert_string_equal(inv.customer_email, "ann@example.com");
    assert_string_equal(inv.customer_name, "Ann");
    assert_int_equal(inv.n_items, 1);
    assert_int_equal(inv.items[0].qty, 2);
    assert_int_equal(inv.items[0].price, 3000);
    assert_int_equal(inv.items[0].line_total, 6000);
    assert_int_equal(inv.subtotal, 6000);
    assert_int_equal(inv.tax, 480);
    assert_int_equal(inv.shipping, 500);
    assert_int_equal(inv.grand_total, 6980);
    assert_int_equal(oq_invoice_lines_text(&inv, &text), 0);
    assert_string_equal(text, "2 x Mug (MUG-1)  $30.00  $60.00\n");
    assert_int_equal(oq_invoice_lines_html(&inv, &html), 0);
    assert_string_equal(html,
                        "<tr><td>Mug<br><small>MUG-1</small></td><td align=\"right\">2</td>"
                        "<td align=\"right\">$30.00</td><td align=\"right\">$60.00</td></tr>\n");
    free(text);
    free(html);
    oq_invoice_clear(&inv);
    yajl_tree_free(v);
}

static void names_are_escaped_and_defaults_apply(void **state)
{
    (void)state;
    struct oq_invoice inv;
    char err[256], *html = NULL, *text = NULL;
    yajl_val v = tree("{\"invoice_id\": 7, \"order_id\": 8, \"currency\": \"JPY\","
                      " \"customer\": {\"email\": \"bo@example.com\"},"
                      " \"items\": [{\"sku\": \"<b>X</b>\", \"qty\": \"3.0000\", \"price\": 1200}],"
                      " \"totals\": {\"subtotal\": 3600, \"grand_total\": \"3600\"}}");
    assert_int_equal(oq_invoice_parse(v, &inv, err, sizeof(err)), 0);
    assert_string_equal(inv.increment_id, "7"); /* no increment_id: the invoice id */
    assert_null(inv.customer_name);
    assert_int_equal(inv.tax, 0);
    assert_int_equal(inv.items[0].line_total, 3600);
    assert_int_equal(oq_invoice_lines_text(&inv, &text), 0);
    assert_string_equal(text, "3 x <b>X</b>  \xc2\xa5"
                              "1,200  \xc2\xa5"
                              "3,600\n");
    assert_int_equal(oq_invoice_lines_html(&inv, &html), 0);
    assert_non_null(
        strstr(html, "<td>&lt;b&gt;X&lt;/b&gt;<br><small>&lt;b&gt;X&lt;/b&gt;</small>"));
    assert_null(strstr(html, "<b>X"));
    free(text);
    free(html);
    oq_invoice_clear(&inv);
    yajl_tree_free(v);
}

static void bad_invoices_say_why(void **state)
{
    (void)state;
    static const struct {
        const char *json, *why;
    } cases[] = {
        {"{}", "event_data.invoice_id: missing or empty"},
        {"{\"invoice_id\": \"\"}", "event_data.invoice_id: missing or empty"},
        {"{\"invoice_id\": \"1\"}", "event_data.order_id: missing or empty"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\"}", "event_data.customer.email: missing"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"}}",
         "event_data.currency: expected an ISO 4217 code"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"usd\"}",
         "event_data.currency"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\"}",
         "event_data.totals: expected an object"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\", \"totals\": {\"subtotal\": \"1.00\"}}",
         "event_data.totals.grand_total: expected an amount"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\", \"totals\": {\"subtotal\": \"1.00\", \"grand_total\": "
         "\"1.005\"}}",
         "event_data.totals.grand_total"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\", \"totals\": {\"subtotal\": \"1\", \"grand_total\": \"1\"}}",
         "event_data.items: expected a non-empty array"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\", \"totals\": {\"subtotal\": \"1\", \"grand_total\": \"1\"},"
         " \"items\": []}",
         "event_data.items: expected a non-empty array"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\", \"totals\": {\"subtotal\": \"1\", \"grand_total\": \"1\"},"
         " \"items\": [{\"sku\": \"A\", \"qty\": 1.5, \"price\": \"1\"}]}",
         "event_data.items[0]: qty: expected a whole number"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\", \"totals\": {\"subtotal\": \"1\", \"grand_total\": \"1\"},"
         " \"items\": [{\"sku\": \"A\", \"qty\": 1, \"price\": \"abc\"}]}",
         "event_data.items[0]: price:"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\", \"totals\": {\"subtotal\": \"1\", \"grand_total\": \"1\"},"
         " \"items\": [{\"qty\": 1, \"price\": \"1\"}]}",
         "event_data.items[0]: expected an object with a sku"},
        {"{\"invoice_id\": \"1\", \"order_id\": \"2\", \"customer\": {\"email\": \"a@b.example\"},"
         " \"currency\": \"USD\", \"totals\": {\"subtotal\": \"1\", \"grand_total\": \"1\"},"
         " \"items\": [{\"sku\": \"A\", \"qty\": 9223372036854775807, \"price\": \"2\"}]}",
         "event_data.items[0]: qty x price is too large"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oq_invoice inv;
        char err[256] = "";
        yajl_val v = tree(cases[i].json);
        int rc = oq_invoice_parse(v, &inv, err, sizeof(err));
        if (rc != OQ_EINVAL || strstr(err, cases[i].why) == NULL)
            fail_msg("case %zu: rc %d, err [%s], want [%s]", i, rc, err, cases[i].why);
        oq_invoice_clear(&inv);
        yajl_tree_free(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_documented_example_is_read),
        cmocka_unit_test(names_are_escaped_and_defaults_apply),
        cmocka_unit_test(bad_invoices_say_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
