/* Words of a one-line specification (an access rule, a route), shared by
 * their parsers: whitespace-separated words with 1-based columns, a '#'
 * word starting a comment, keywords compared case-insensitively, errors as
 * "column N: message", and text quoted safely into messages. */
#ifndef SOCKS5D_WORDS_H
#define SOCKS5D_WORDS_H

#include <stddef.h>

/* Longest excerpt of the text quoted in an error message. */
#define WORDS_QUOTE_MAX 48

struct words {
    const char *text;
    size_t pos; /* 0-based offset of the next unread byte */
    char *err;  /* where words_fail writes; may be NULL */
    size_t errlen;
};

struct word {
    const char *s;
    size_t len;
    size_t col; /* 1-based column of s[0] */
};

/* Reads the next word; returns 0 at the end of the text or at a word
 * starting with '#' (a comment runs to the end of the line). */
int words_next(struct words *p, struct word *t);
/* 1 when t is `keyword` (lower case), case-insensitively. */
int words_is(const struct word *t, const char *keyword);
/* Formats "column COL: message" into p->err; always returns -1. */
int words_fail(struct words *p, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Copies up to WORDS_QUOTE_MAX bytes of s into buf (cut ones end in "..."),
 * control and non-ASCII bytes shown as '?' so the text cannot forge log
 * lines. Returns buf. */
const char *words_quote(char *buf, size_t buflen, const char *s, size_t len);

#endif
