#include "report.h"

#include <math.h>
#include <stdio.h>

static bool first_field;

static void key(const char *k)
{
    printf("%s\"%s\": ", first_field ? "" : ", ", k);
    first_field = false;
}

void report_begin(const char *scenario, bool direct)
{
    first_field = true;
    printf("{");
    report_str("scenario", scenario);
    report_str("mode", direct ? "direct" : "proxy");
}

void report_str(const char *k, const char *val)
{
    key(k);
    putchar('"');
    /* Error texts come from strerror and our own messages; escape the two
     * characters JSON requires and drop control characters. */
    for (const char *p = val; *p; p++) {
        if (*p == '"' || *p == '\\')
            putchar('\\');
        if ((unsigned char)*p >= 0x20)
            putchar(*p);
    }
    putchar('"');
}

void report_num(const char *k, double val)
{
    key(k);
    if (isfinite(val))
        printf("%.6g", val);
    else
        printf("null");
}

void report_int(const char *k, long long val)
{
    key(k);
    printf("%lld", val);
}

void report_bool(const char *k, bool val)
{
    key(k);
    printf("%s", val ? "true" : "false");
}

void report_end(void)
{
    printf("}\n");
    fflush(stdout);
}
