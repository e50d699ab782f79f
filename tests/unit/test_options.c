/* The option table (src/options.c): what is made from it matches it, the
 * man pages document every entry, and -T prints what the parser reads back. */
#include "unit_support.h"

#include <stdio.h>

#include "config.h"
#include "options.h"

/* Reads a whole file into a fresh NUL-terminated string. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(f);
    fclose(out);
    return text;
}

/* name with every '-' written as the roff escape "\-". */
static void roff(const char *name, char *out, size_t len)
{
    size_t k = 0;
    for (; *name && k + 3 < len; name++) {
        if (*name == '-')
            out[k++] = '\\';
        out[k++] = *name;
    }
    out[k] = '\0';
}

/* 1 when `word` occurs in text not followed by a letter, digit or "\-"
 * (so that max-sessions is not found inside max-sessions-per-ip). */
static int has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word)) {
        const char *e = p + n;
        if (!(e[0] == '\\' && e[1] == '-') && !(e[0] >= 'a' && e[0] <= 'z') &&
            !(e[0] >= '0' && e[0] <= '9'))
            return 1;
    }
    return 0;
}

TEST(every_option_is_in_the_man_page_and_every_directive_in_the_file_page)
{
    char *man8 = slurp("docs/socks5d.8"), *man5 = slurp("docs/socks5d.conf.5");
    char name[128], want[160];
    int missing = 0;
    for (size_t i = 0; i < options_count; i++) {
        const struct options_def *d = &options_table[i];
        roff(d->name, name, sizeof name);
        if (d->where & OPTIONS_CLI) {
            snprintf(want, sizeof want, "\\-\\-%s", name);
            if (!has_word(man8, want))
                print_error("socks5d.8 lacks --%s\n", d->name), missing++;
            snprintf(want, sizeof want, "\\-%c ", d->letter);
            if (d->letter && !strstr(man8, want))
                print_error("socks5d.8 lacks -%c\n", d->letter), missing++;
        }
        if (d->where & OPTIONS_FILE) {
            int found = 0;
            for (const char *macro = ".B\0.BI\0.BR\0"; *macro; macro += strlen(macro) + 1) {
                snprintf(want, sizeof want, "\n%s %s", macro, name);
                found |= has_word(man5, want);
            }
            if (!found)
                print_error("socks5d.conf.5 lacks a .B/.BI/.BR line for %s\n", d->name), missing++;
        }
    }
    free(man8);
    free(man5);
    assert_int_equal(missing, 0);
}

TEST(help_lists_every_command_line_option_and_letter)
{
    char *text = NULL, want[128];
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    options_usage(out);
    fclose(out);
    for (size_t i = 0; i < options_count; i++) {
        const struct options_def *d = &options_table[i];
        if (!(d->where & OPTIONS_CLI))
            continue;
        snprintf(want, sizeof want, "--%s", d->name);
        if (!strstr(text, want))
            fail_msg("--help lacks %s", want);
        snprintf(want, sizeof want, "-%c, --%s", d->letter, d->name);
        if (d->letter && !strstr(text, want))
            fail_msg("--help lacks %s", want);
    }
    free(text);
}

TEST(names_and_letters_are_unique_and_only_the_first_pass_has_no_setter)
{
    for (size_t i = 0; i < options_count; i++) {
        const struct options_def *d = &options_table[i];
        assert_true(d->where & OPTIONS_BOTH);
        assert_true((d->set == NULL) == (d->first != OPTIONS_APPLY));
        assert_true(d->first == OPTIONS_APPLY || d->where == OPTIONS_CLI);
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(d->name, options_table[j].name);
            assert_true(!d->letter || d->letter != options_table[j].letter);
        }
    }
}

TEST(directives_are_found_whatever_their_case)
{
    assert_ptr_equal(options_directive("timeout-idle"), options_directive("Timeout-IDLE"));
    assert_non_null(options_directive("ALLOW"));
    assert_null(options_directive("config")); /* command line only */
    assert_null(options_directive("frobnicate"));
}

TEST(a_typo_suggests_the_nearest_name_and_nonsense_suggests_nothing)
{
    assert_string_equal(options_did_you_mean("timout-idle", OPTIONS_FILE), "timeout-idle");
    assert_string_equal(options_did_you_mean("no-udpp", OPTIONS_FILE), "no-udp");
    assert_string_equal(options_did_you_mean("Listne", OPTIONS_FILE), "listen");
    assert_string_equal(options_did_you_mean("cheque", OPTIONS_CLI), "check");
    assert_null(options_did_you_mean("frobnicate", OPTIONS_FILE));
    assert_null(options_did_you_mean("x", OPTIONS_FILE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_option_is_in_the_man_page_and_every_directive_in_the_file_page),
        cmocka_unit_test(help_lists_every_command_line_option_and_letter),
        cmocka_unit_test(names_and_letters_are_unique_and_only_the_first_pass_has_no_setter),
        cmocka_unit_test(directives_are_found_whatever_their_case),
        cmocka_unit_test(a_typo_suggests_the_nearest_name_and_nonsense_suggests_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
