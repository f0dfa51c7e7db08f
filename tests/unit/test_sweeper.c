/* test_sweeper.c - the lease sweeper's pure parts: letter keys, its pace */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "orderq/sweeper.h"

/* The same lease names the same letter on any host and in any pass, so
 * the table's unique key keeps one letter per abandoned lease. */
static void a_lease_has_one_letter_key(void **state)
{
    (void)state;
    char a[65], b[65];
    assert_int_equal(
        oq_sweep_letter_key("coupon_mail", "coupon:X", "2026-12-01 10:00:00.000001", a), 0);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_int_equal(
        oq_sweep_letter_key("coupon_mail", "coupon:X", "2026-12-01 10:00:00.000001", b), 0);
    assert_string_equal(a, b);
    /* the known value: SHA-256 of "sweep:" and the three parts, each with its NUL */
    assert_int_equal(oq_sweep_letter_key("h", "k", "t", a), 0);
    assert_string_equal(a, "fe92dbaa298d38af468c70abf8359b88a4f5455b9ca87e066d70ba9928fc6b2f");
}

/* Another lease of the same effect (taken over, then abandoned again) is
 * another letter; the parts cannot slide into each other. */
static void other_leases_have_other_keys(void **state)
{
    (void)state;
    char a[65], b[65];
    assert_int_equal(
        oq_sweep_letter_key("coupon_mail", "coupon:X", "2026-12-01 10:00:00.000001", a), 0);
    assert_int_equal(
        oq_sweep_letter_key("coupon_mail", "coupon:X", "2026-12-01 10:00:00.000002", b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(oq_sweep_letter_key("ab", "c", "t", a), 0);
    assert_int_equal(oq_sweep_letter_key("a", "bc", "t", b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(oq_sweep_letter_key("webhook", "coupon:X", "2026-12-01 10:00:00", a), 0);
    assert_int_equal(oq_sweep_letter_key("coupon_mail", "coupon:X", "2026-12-01 10:00:00", b), 0);
    assert_string_not_equal(a, b);
}

/* A quarter of the grace, from 1 s to 30 s. */
static void the_pace_follows_the_grace(void **state)
{
    (void)state;
    assert_int_equal(oq_sweep_interval_ms(1000), 1000);
    assert_int_equal(oq_sweep_interval_ms(8000), 2000);
    assert_int_equal(oq_sweep_interval_ms(60000), 15000);
    assert_int_equal(oq_sweep_interval_ms(4200000), 30000); /* the default 70m */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_lease_has_one_letter_key),
        cmocka_unit_test(other_leases_have_other_keys),
        cmocka_unit_test(the_pace_follows_the_grace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
