/* Socket address helpers: parse "host:port", format for logs, classify. */
#ifndef SOCKS5D_ADDR_H
#define SOCKS5D_ADDR_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>

/* Large enough for every address a session handles, far smaller than
 * sockaddr_storage: sessions keep several of these. */
union addr_any {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

/* "[ipv6]:port", "ipv4:port". Returns 0, or -1 when the text is not an IP
 * literal with a port in 1..65535. */
int addr_parse(const char *text, union addr_any *out);
/* Formats sa as "1.2.3.4:80" or "[::1]:80" into buf (at least ADDR_STRLEN). */
#define ADDR_STRLEN (INET6_ADDRSTRLEN + 8)
const char *addr_str(const struct sockaddr *sa, char *buf, size_t len);
socklen_t addr_len(const struct sockaddr *sa);
uint16_t addr_port(const struct sockaddr *sa);
/* Sets the port (host byte order) of an IPv4 or IPv6 address. */
void addr_set_port(union addr_any *a, uint16_t port);
int addr_is_loopback(const struct sockaddr *sa);
int addr_is_unspecified(const struct sockaddr *sa);
/* 1 when both carry the same IP (ports ignored; v4-mapped v6 equals v4). */
int addr_same_ip(const struct sockaddr *a, const struct sockaddr *b);
/* Copies sa into out, turning an IPv4-mapped IPv6 address into IPv4. */
void addr_normalize(const struct sockaddr *sa, union addr_any *out);

/* An immutable, sorted set of IP addresses (IPv4 stored IPv4-mapped), shared
 * by reference between the thread that builds it and the ones that read it. */
struct addr_list {
    atomic_int refs;
    size_t n;
    struct in6_addr a[];
};

/* Copies the IPv4 and IPv6 addresses among sa[0..n) (other families and NULL
 * entries skipped, duplicates dropped) into a new list with one reference.
 * Returns NULL when out of memory. */
struct addr_list *addr_list_new(const struct sockaddr *const *sa, size_t n);
struct addr_list *addr_list_ref(struct addr_list *l);
/* Drops a reference and frees on the last; NULL is accepted. */
void addr_list_unref(struct addr_list *l);
/* 1 when a (IPv4 as IPv4-mapped) is in l; 0 otherwise and for NULL l. */
int addr_list_has(const struct addr_list *l, const struct in6_addr *a);
/* 1 when both hold the same addresses (two NULLs are equal, NULL and empty too). */
int addr_list_equal(const struct addr_list *x, const struct addr_list *y);

#endif
