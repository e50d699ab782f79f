#include "hostname.h"

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

const char *hostname_problem(const char *s, size_t len)
{
    size_t label = 0;
    if (len == 0)
        return "empty name";
    if (len > HOSTNAME_MAX_LEN)
        return "name longer than 253 characters";
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (label == 0)
                return "empty label";
            label = 0;
        } else if (!name_char(s[i])) {
            return "invalid character (use letters, digits, '-', '_' and '.')";
        } else if (++label > HOSTNAME_MAX_LABEL) {
            return "label longer than 63 characters";
        }
    }
    return label == 0 ? "empty label" : NULL;
}
