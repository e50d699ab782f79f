/* Scenario entry points: each prints one JSON object and returns the exit
 * status (0 ok, 1 the scenario failed). */
#ifndef BENCH_SCENARIOS_H
#define BENCH_SCENARIOS_H

#include "opts.h"

int scen_tput(const struct opts *o, bool upload);
int scen_rr(const struct opts *o);
int scen_fair(const struct opts *o);
int scen_crr(const struct opts *o);
int scen_udp(const struct opts *o);
int scen_idle(const struct opts *o);
int scen_sink(const struct opts *o);
int scen_trickle(const struct opts *o);

/* Wait until the driver writes a line on stdin or closes it, at most hold
 * seconds. */
void wait_for_driver(double hold);

/* Report a scenario that could not run at all. */
int scen_fail(const struct opts *o, const char *what);

#endif
