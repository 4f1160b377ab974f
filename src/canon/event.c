#include "canon/event.h"

const char *bt_finish_name(enum bt_finish f)
{
    switch (f) {
    case BT_FINISH_STOP: return "stop";
    case BT_FINISH_LENGTH: return "length";
    case BT_FINISH_TOOL_CALLS: return "tool_calls";
    case BT_FINISH_CONTENT_FILTER: return "content_filter";
    case BT_FINISH_OTHER: return "other";
    case BT_FINISH_STOP_SEQUENCE: return "stop_sequence";
    case BT_FINISH_PAUSE_TURN: return "pause_turn";
    case BT_FINISH_NONE: break;
    }
    return "";
}

enum bt_finish bt_finish_parse(struct bt_str s)
{
    if (bt_str_eq_c(s, "stop")) return BT_FINISH_STOP;
    if (bt_str_eq_c(s, "length")) return BT_FINISH_LENGTH;
    if (bt_str_eq_c(s, "tool_calls") || bt_str_eq_c(s, "function_call"))
        return BT_FINISH_TOOL_CALLS;
    if (bt_str_eq_c(s, "content_filter")) return BT_FINISH_CONTENT_FILTER;
    if (bt_str_eq_c(s, "stop_sequence")) return BT_FINISH_STOP_SEQUENCE;
    if (bt_str_eq_c(s, "pause_turn")) return BT_FINISH_PAUSE_TURN;
    return s.len ? BT_FINISH_OTHER : BT_FINISH_NONE;
}
