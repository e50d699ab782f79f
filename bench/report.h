/* One flat JSON object on stdout, built field by field. */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdbool.h>

void report_begin(const char *scenario, bool direct);
void report_str(const char *key, const char *val);
void report_num(const char *key, double val);
void report_int(const char *key, long long val);
void report_bool(const char *key, bool val);
/* Close the object, print it and flush. */
void report_end(void);

#endif
