/*
 * fuzz_edn.c: libFuzzer target for the EDN reader (base/edn.c), which reads transaction
 * data and queries from the wire. Every form read is printed and read back: the printed
 * text must parse to a form that prints identically (print is a fixpoint after one round).
 * Build: cmake -DCMAKE_C_COMPILER=clang -DDL_FUZZ=ON; run: build/bin/fuzz_edn -max_total_time=60
 */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dl_arena_t ar;
    dl__arena_init(&ar, 4096);
    dl_edn_reader_t r;
    dl__edn_reader_init(&r, (const char *)data, size, &ar);
    for (int i = 0; i < 64; i++) {
        dl_edn_t *form = NULL;
        dl_error_t err;
        dl_error_clear(&err);
        if (dl__edn_read(&r, &form, &err) != DL_OK || !form)
            break;
        dl_buf_t a, b;
        dl__buf_init(&a);
        dl__buf_init(&b);
        dl__edn_print(form, &a);
        if (!a.oom) {
            dl_edn_t *again = NULL;
            if (dl__edn_read_one(a.data, a.len, &ar, &again, NULL) != DL_OK || !again)
                abort(); /* printed EDN must read back */
            dl__edn_print(again, &b);
            if (!b.oom && (a.len != b.len || memcmp(a.data, b.data, a.len) != 0))
                abort();
        }
        dl__buf_fini(&a);
        dl__buf_fini(&b);
    }
    dl__arena_fini(&ar);
    return 0;
}
