/* Shared by the unit tests of the users file, the verification cache and
 * the verification pool: hashes of three algorithms and a parser helper.
 *
 * Hashes are made with crypt_gensalt_rn + crypt_r so sha512-crypt ($6$),
 * bcrypt ($2b$) and yescrypt ($y$) are all exercised. */
#ifndef SOCKS5D_AUTH_SUPPORT_H
#define SOCKS5D_AUTH_SUPPORT_H

#include "unit_support.h"

#include <crypt.h>
#include <stdio.h>

#include "users.h"

#define UNUSED_OK __attribute__((unused))

enum { ALG_SHA512, ALG_BCRYPT, ALG_YESCRYPT, NALG };
static const char *const alg_prefix[NALG] = {"$6$", "$2b$", "$y$"};
static const char *const alg_user[NALG] UNUSED_OK = {"sha", "bcr", "yes"};
static const char *const alg_pass[NALG] = {"s3cret-sha", "s3cret-bcrypt", "s3cret-yes"};
static char alg_hash[NALG][CRYPT_OUTPUT_SIZE];
/* A second hash of the same password (another salt): "the hash changed". */
static char alt_hash[CRYPT_OUTPUT_SIZE] UNUSED_OK;

static inline void make_hash(const char *prefix, const char *pass, char *out)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    assert_non_null(cd);
    const char *salt = crypt_gensalt_rn(prefix, 0, NULL, 0, cd->setting, sizeof cd->setting);
    if (!salt)
        fail_msg("crypt_gensalt_rn(%s) failed", prefix);
    const char *h = crypt_r(pass, salt, cd);
    if (!h || h[0] == '*')
        fail_msg("crypt_r(%s) failed", prefix);
    assert_true(strncmp(h, prefix, strlen(prefix)) == 0);
    snprintf(out, CRYPT_OUTPUT_SIZE, "%s", h);
    free(cd);
}

/* Fills alg_hash and alt_hash: a cmocka group setup. */
static inline int make_alg_hashes(void **state)
{
    (void)state;
    for (int i = 0; i < NALG; i++)
        make_hash(alg_prefix[i], alg_pass[i], alg_hash[i]);
    make_hash("$6$", alg_pass[ALG_SHA512], alt_hash);
    return 0;
}

static inline struct users *parse_str(const char *text, char *err, size_t errlen)
{
    /* An exact-size heap copy: ASan catches a read past len. */
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    err[0] = '\0';
    struct users *u = users_parse(copy, len, "users.txt", err, errlen);
    free(copy);
    return u;
}

#endif
