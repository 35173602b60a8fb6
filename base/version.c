/* version.c: the library's version, for programs linked against a different header. */
#include "base/base.h"

#include <deltalog/deltalog.h>

const char *dl_version(void) { return DL_VERSION_STRING; }
