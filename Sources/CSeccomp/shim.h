#ifndef AEROGRID_CSECCOMP_SHIM_H
#define AEROGRID_CSECCOMP_SHIM_H
#include <seccomp.h>
#endif
