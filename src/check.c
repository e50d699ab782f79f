/* The checks only -t makes: the start meets these problems after binding
 * (privileges) or never says anything (rules and hashes that cannot match). */
#include "check.h"

#include <string.h>

#include "config.h"
#include "pidfile.h"
#include "privs.h"
#include "proto.h"
#include "rules.h"
#include "users.h"

struct user_check {
    const struct config *c;
    FILE *warn;
    int logins;     /* userpass or gssapi is offered: sessions can have a user */
    int principals; /* gssapi: users no file lists */
};

/* A `user` clause naming someone with no line in the users file, or any
 * `user` clause when nobody logs in, matches no session. */
static void check_rule_user(void *arg, const char *name, const char *file, int line)
{
    const struct user_check *k = arg;
    if (!k->logins)
        fprintf(k->warn,
                "%s:%d: warning: rule names user %s but %s: no session logs in, so it never "
                "matches\n",
                file, line, name ? name : "any",
                k->c->users ? "auth does not offer userpass" : "there is no users file");
    else if (name && !k->principals && !users_find(k->c->users, name))
        fprintf(k->warn, "%s:%d: warning: rule names user %s, who is not in %s: it never matches\n",
                file, line, name, k->c->users_path);
}

int check_config(const struct config *c, FILE *warn, FILE *err)
{
    char why[512];
    int gss = memchr(c->methods, SOCKS5_METHOD_GSSAPI, c->nmethods) != NULL;
    struct user_check k = {
        c, warn, gss || memchr(c->methods, SOCKS5_METHOD_USERPASS, c->nmethods) != NULL, gss};
    rules_each_user(c->rules, check_rule_user, &k);
    users_warn_mixed(c->users, c->users_path, warn);
    users_warn_unusable(c->users, c->users_path, warn);
    if (privs_check(c, c->listen, c->nlisten, why, sizeof why) < 0 ||
        (c->pid_file && pidfile_check(c->pid_file, why, sizeof why) < 0)) {
        fprintf(err, "socks5d: %s\n", why);
        return -1;
    }
    return 0;
}
