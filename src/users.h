/* The users file of RFC 1929 logins: "name:hash" lines, the crypt(3)
 * settings (algorithm and cost) it uses and what one hash of each costs.
 * Immutable once loaded. (`socks5d passwd` is passwd.c.) */
#ifndef SOCKS5D_USERS_H
#define SOCKS5D_USERS_H

#include <crypt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct users;

/* Loads "name:hash" lines ('#' comments, blank lines ignored). Returns NULL
 * with "path:line: reason" in err on any error. */
struct users *users_load(const char *path, char *err, size_t errlen);
/* Parses a users file already in memory; `path` is only used in messages.
 * O(n log n) in the number of users: the entries are sorted once. When the
 * file has several errors, the one on the earliest line is reported. */
struct users *users_parse(const char *text, size_t len, const char *path, char *err, size_t errlen);
void users_free(struct users *u);
size_t users_count(const struct users *u);
/* How a reload changed the login of `name` (known to `old`). */
enum users_change { USERS_SAME, USERS_REMOVED, USERS_NEW_PASSWORD };
enum users_change users_compare(const struct users *old, const struct users *new, const char *name);
/* The i-th name in sort order, for i < users_count(u). */
const char *users_name(const struct users *u, size_t i);
/* The stored hash for name, or NULL. */
const char *users_find(const struct users *u, const char *name);
/* Distinct hash settings (algorithm and cost) in the file. With more than
 * one, every login is answered as late as the slowest (`socks5d -t` warns). */
size_t users_settings(const struct users *u);
/* What one hash of the slowest setting took when the file was loaded. */
uint32_t users_cost_us(const struct users *u);
/* A stored hash of the slowest setting (unknown users are checked against
 * it), or NULL for an empty file. */
const char *users_stand_in(const struct users *u);
/* 1 when two crypt(3) hashes have the same algorithm and cost. */
int users_same_setting(const char *a, const char *b);
/* Runs crypt_r(pass, hash, cd), sets *out to its result (NULL on failure)
 * and returns the microseconds it took. */
uint32_t users_crypt_timed(const char *pass, const char *hash, struct crypt_data *cd,
                           const char **out);
/* For `socks5d -t`: warns on `out` about each line whose hash no password
 * can match (cut short, stray characters, an algorithm crypt(3) refuses);
 * one crypt(3) per distinct setting. Returns how many. */
size_t users_warn_unusable(const struct users *u, const char *path, FILE *out);
/* For `socks5d -t`: warns on `out` when the file at `path` mixes settings. */
void users_warn_mixed(const struct users *u, const char *path, FILE *out);

#endif
