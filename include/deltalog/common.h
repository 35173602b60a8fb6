/*
 * common.h: macros every public header shares: symbol export, result checking.
 * Not API by itself; included by the other headers.
 */
#ifndef DELTALOG_COMMON_H
#define DELTALOG_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define DL_API             __attribute__((visibility("default")))
#define DL_WUR             __attribute__((warn_unused_result))
#define DL_PRINTF(fmt, va) __attribute__((format(printf, fmt, va)))
#else
#define DL_API
#define DL_WUR
#define DL_PRINTF(fmt, va)
#endif

#ifdef __cplusplus
#define DL_BEGIN_DECLS extern "C" {
#define DL_END_DECLS   }
#else
#define DL_BEGIN_DECLS
#define DL_END_DECLS
#endif

#endif
