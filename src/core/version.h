#ifndef BT_CORE_VERSION_H
#define BT_CORE_VERSION_H
#define BT_VERSION "0.1.0"
#endif
