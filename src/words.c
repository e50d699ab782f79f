/* Words of a one-line specification. See words.h. */
#include "words.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int words_next(struct words *p, struct word *t)
{
    while (is_space(p->text[p->pos]))
        p->pos++;
    if (p->text[p->pos] == '\0' || p->text[p->pos] == '#')
        return 0;
    t->s = p->text + p->pos;
    t->col = p->pos + 1;
    while (p->text[p->pos] != '\0' && !is_space(p->text[p->pos]))
        p->pos++;
    t->len = (size_t)(p->text + p->pos - t->s);
    return 1;
}

int words_is(const struct word *t, const char *keyword)
{
    size_t n = strlen(keyword);
    if (t->len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t->s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != keyword[i])
            return 0;
    }
    return 1;
}

int words_fail(struct words *p, size_t col, const char *fmt, ...)
{
    if (p->err == NULL || p->errlen == 0)
        return -1;
    int n = snprintf(p->err, p->errlen, "column %zu: ", col);
    if (n < 0 || (size_t)n >= p->errlen)
        return -1; /* too small for more: the column prefix (or part of it) stays */
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap); /* truncation is fine */
    va_end(ap);
    return -1;
}

const char *words_quote(char *buf, size_t buflen, const char *s, size_t len)
{
    size_t n = 0;
    int cut = len > WORDS_QUOTE_MAX;
    if (cut)
        len = WORDS_QUOTE_MAX - 3;
    for (size_t i = 0; i < len && n + 1 < buflen; i++)
        buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    for (int i = 0; cut && i < 3 && n + 1 < buflen; i++)
        buf[n++] = '.';
    buf[n] = '\0';
    return buf;
}
