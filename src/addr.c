#include "addr.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *s, uint16_t *port)
{
    char *end;
    long v;
    if (*s < '0' || *s > '9')
        return -1;
    v = strtol(s, &end, 10);
    if (*end || v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int addr_parse(const char *text, union addr_any *out)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    uint16_t port;
    size_t hl;
    int bracketed = text[0] == '[';

    memset(out, 0, sizeof *out);
    if (bracketed) {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return -1;
        hl = (size_t)(close - text - 1);
        colon = close + 1;
        text++;
    } else {
        colon = strrchr(text, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - text);
    }
    if (hl == 0 || hl >= sizeof host || parse_port(colon + 1, &port) < 0)
        return -1;
    memcpy(host, text, hl);
    host[hl] = '\0';
    /* Brackets exactly when the address is IPv6: "::1:80" is ambiguous. */
    if (bracketed != (strchr(host, ':') != NULL))
        return -1;
    if (inet_pton(AF_INET, host, &out->in4.sin_addr) == 1) {
        out->in4.sin_family = AF_INET;
        out->in4.sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons(port);
        return 0;
    }
    return -1;
}

const char *addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        snprintf(buf, len, "%s:%u", ip, ntohs(s->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        snprintf(buf, len, "[%s]:%u", ip, ntohs(s->sin6_port));
    } else {
        snprintf(buf, len, "-");
    }
    return buf;
}

socklen_t addr_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

uint16_t addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return 0;
}

void addr_set_port(union addr_any *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET6)
        a->in6.sin6_port = htons(port);
    else
        a->in4.sin_port = htons(port);
}

void addr_normalize(const struct sockaddr *sa, union addr_any *out)
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        out->in4.sin_family = AF_INET;
        out->in4.sin_port = s6->sin6_port;
        memcpy(&out->in4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
    } else if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        memcpy(out, sa, addr_len(sa));
    }
}

int addr_is_loopback(const struct sockaddr *sa)
{
    union addr_any a;
    addr_normalize(sa, &a);
    if (a.sa.sa_family == AF_INET)
        return (ntohl(a.in4.sin_addr.s_addr) >> 24) == 127;
    return a.sa.sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a.in6.sin6_addr);
}

int addr_is_unspecified(const struct sockaddr *sa)
{
    union addr_any a;
    addr_normalize(sa, &a);
    if (a.sa.sa_family == AF_INET)
        return a.in4.sin_addr.s_addr == htonl(INADDR_ANY);
    return a.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a.in6.sin6_addr);
}

int addr_same_ip(const struct sockaddr *x, const struct sockaddr *y)
{
    union addr_any a, b;
    addr_normalize(x, &a);
    addr_normalize(y, &b);
    if (a.sa.sa_family != b.sa.sa_family)
        return 0;
    if (a.sa.sa_family == AF_INET)
        return a.in4.sin_addr.s_addr == b.in4.sin_addr.s_addr;
    return memcmp(&a.in6.sin6_addr, &b.in6.sin6_addr, 16) == 0;
}

static int in6_cmp(const void *x, const void *y)
{
    return memcmp(x, y, sizeof(struct in6_addr));
}

/* sa as an IPv6 address, IPv4 mapped; 0 for other families. */
static int to_in6(const struct sockaddr *sa, struct in6_addr *out)
{
    if (sa && sa->sa_family == AF_INET) {
        memset(out, 0, sizeof *out);
        out->s6_addr[10] = out->s6_addr[11] = 0xff;
        memcpy(out->s6_addr + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 1;
    }
    if (sa && sa->sa_family == AF_INET6) {
        *out = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        return 1;
    }
    return 0;
}

struct addr_list *addr_list_new(const struct sockaddr *const *sa, size_t n)
{
    if (n > (SIZE_MAX - sizeof(struct addr_list)) / sizeof(struct in6_addr))
        return NULL;
    struct addr_list *l = malloc(sizeof *l + n * sizeof l->a[0]);
    if (l == NULL)
        return NULL;
    atomic_init(&l->refs, 1);
    l->n = 0;
    for (size_t i = 0; i < n; i++)
        l->n += (size_t)to_in6(sa[i], &l->a[l->n]);
    qsort(l->a, l->n, sizeof l->a[0], in6_cmp);
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++)
        if (k == 0 || in6_cmp(&l->a[k - 1], &l->a[i]) != 0)
            l->a[k++] = l->a[i];
    l->n = k;
    return l;
}

struct addr_list *addr_list_ref(struct addr_list *l)
{
    if (l)
        atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
    return l;
}

void addr_list_unref(struct addr_list *l)
{
    if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

int addr_list_has(const struct addr_list *l, const struct in6_addr *a)
{
    return l && bsearch(a, l->a, l->n, sizeof l->a[0], in6_cmp) != NULL;
}

int addr_list_equal(const struct addr_list *x, const struct addr_list *y)
{
    size_t nx = x ? x->n : 0, ny = y ? y->n : 0;
    return nx == ny && (nx == 0 || memcmp(x->a, y->a, nx * sizeof x->a[0]) == 0);
}
