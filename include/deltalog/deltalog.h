/*
 * deltalog.h: the umbrella header. Include this and link -ldeltalog (pkg-config
 * deltalog). Every public declaration lives in include/deltalog/; nothing else is API.
 */
#ifndef DELTALOG_H
#define DELTALOG_H

#include <deltalog/alloc.h>
#include <deltalog/common.h>
#include <deltalog/error.h>
#include <deltalog/value.h>
#include <deltalog/version.h>

DL_BEGIN_DECLS
/* The library's version string, e.g. "0.1.0" (may differ from the header's). */
DL_API const char *dl_version(void);
DL_END_DECLS

#endif
