#include "api/api.h"

#include <stdio.h>

/* Checks a client-chosen name that can reach a response header, a log line, a
 * metric label or an upstream request: 1 to BT_NAME_MAX bytes, none of them a
 * control character (C0, DEL). On failure writes why into msg, quoting the value
 * with control bytes shown as \xNN. */
bool bt_api_name_ok(struct bt_str v, const char *field, char *msg, size_t msgcap)
{
    size_t bad = v.len;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch < 0x20 || ch == 0x7f) {
            bad = i;
            break;
        }
    }
    if (v.len && v.len <= BT_NAME_MAX && bad == v.len) return true;
    char shown[100];
    size_t o = 0;
    for (size_t i = 0; i < v.len && o + 5 < sizeof(shown) - 4; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch < 0x20 || ch == 0x7f) o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\x%02x", ch);
        else shown[o++] = (char)ch;
    }
    if (o < v.len) {
        memcpy(shown + o, "...", 3);
        o += 3;
    }
    shown[o] = 0;
    if (!v.len)
        snprintf(msg, msgcap, "'%s' must be a non-empty string.", field);
    else if (bad < v.len)
        snprintf(msg, msgcap,
                 "Invalid '%s' \"%s\": it contains a control character (0x%02x at byte %zu); "
                 "it must be printable text of at most %d bytes.",
                 field, shown, (unsigned char)v.p[bad], bad, BT_NAME_MAX);
    else
        snprintf(msg, msgcap, "Invalid '%s' \"%s\": it is %zu bytes long; at most %d are allowed.",
                 field, shown, v.len, BT_NAME_MAX);
    return false;
}
