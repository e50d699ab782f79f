/* The option table: every command-line option and config-file directive,
 * once. getopt's tables, --help, directive lookup, defaults, validation of
 * each value and `socks5d -T` are all made from it, so adding an option is
 * adding one line to options_table (src/options.c). options.c also reads
 * config files and the command line through it: config_load and
 * config_dump (config.h) are defined there. */
#ifndef SOCKS5D_OPTIONS_H
#define SOCKS5D_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct option;
struct options_def;

/* Where a value came from, for messages and for rules' file:line. */
struct options_origin {
    const char *file; /* NULL: the command line */
    int line;
    int column;                /* of the value: where most errors are */
    int name_column;           /* of the directive's name */
    int depth;                 /* of include */
    int cli_listen, cli_rules; /* the command line replaced these lists */
    /* Reads an included file (already resolved against this one); returns
     * 0 or -1 after printing its problems. */
    int (*include)(struct config *c, const char *path, struct options_origin *parent);
};

/* Applies arg to c. Returns 0, -1 with the reason (and a hint) in err, or
 * -2 when the reason was printed already (an included file). */
typedef int options_set_fn(struct config *c, const struct options_def *d, const char *arg,
                           struct options_origin *o, char *err, size_t errlen);
/* Prints the value(s) as config-file lines, for `socks5d -T`. */
typedef void options_show_fn(const struct config *c, const struct options_def *d, FILE *out);

enum options_where { OPTIONS_CLI = 1, OPTIONS_FILE = 2, OPTIONS_BOTH = 3 };

/* Options the command line's first pass acts on; the others are applied. */
enum options_first {
    OPTIONS_APPLY = 0,
    OPTIONS_CONFIG,
    OPTIONS_CHECK,
    OPTIONS_DUMP,
    OPTIONS_HELP,
    OPTIONS_VERSION,
    OPTIONS_BUILD
};

struct options_def {
    const char *name; /* "--name" and the directive "name" */
    int letter;       /* short option, 0: none */
    enum options_where where;
    const char *metavar; /* the value in --help; NULL: a flag (no value on the command
                            line, an optional yes|no in a file) */
    const char *help;    /* NULL: not in --help; '\n' continues on the next line */
    const char *def;     /* the default, applied with set before the file; NULL: none */
    options_set_fn *set;
    options_show_fn *show; /* NULL: not printed by -T */
    size_t field;          /* offsetof(struct config, ...) for the generic kinds */
    uint64_t min, max;     /* accepted range of counts and durations (ms) */
    enum options_first first;
};

#define OPTIONS_MAX 128 /* entries options_table may have */

extern const struct options_def options_table[];
extern const size_t options_count;

/* The directive `name` (case-insensitive), or NULL. */
const struct options_def *options_directive(const char *name);
/* The name closest to `name` among the options usable in `where`, when it
 * is close enough to be a typo; else NULL. */
const char *options_did_you_mean(const char *name, enum options_where where);
/* getopt_long's tables: `lo` has room for OPTIONS_MAX + 1 entries and
 * `shorts` for 3 * OPTIONS_MAX + 2 bytes. A returned value v maps back
 * with options_from_getopt. */
void options_getopt(struct option *lo, char *shorts);
const struct options_def *options_from_getopt(int v);
/* Sets every option that has a default. Returns 0, or -1 (out of memory)
 * after saying so on config_load's error stream. */
int options_defaults(struct config *c);
void options_usage(FILE *out);

#endif
