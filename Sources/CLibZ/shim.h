#ifndef AEROGRID_CLIBZ_SHIM_H
#define AEROGRID_CLIBZ_SHIM_H
#include <zlib.h>
#endif
