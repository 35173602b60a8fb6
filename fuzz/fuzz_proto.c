/*
 * fuzz_proto.c: libFuzzer target for the protocol v1 request decoder (runtime/proto.c).
 * Any byte string must decode to a request or to an error whose reply line is valid
 * JSON; nothing may crash, leak or read out of bounds (built with ASan+UBSan).
 * Build: cmake -DCMAKE_C_COMPILER=clang -DDL_FUZZ=ON; run: build/bin/fuzz_proto -max_total_time=60
 */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const dl_proto_limits_t lim = {1u << 16, 64};
    dl_request_t req;
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl__proto_decode((const char *)data, size, &lim, &req, &err);
    size_t len = 0;
    char *line = rc == DL_OK ? dl__proto_reply_ok(req.id, json_object(), &len)
                             : dl__proto_reply_error(req.id, rc, err.message, &len);
    if (!line || len == 0 || line[len - 1] != '\n')
        abort();
    json_t *j = json_loadb(line, len - 1, 0, NULL);
    if (!j)
        abort();
    json_decref(j);
    dl_free(line);
    dl__proto_request_fini(&req);
    return 0;
}
