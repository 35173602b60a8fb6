/*
 * uv.c: the libuv helper for channel delivery: a uv_poll_t on a subscription's eventfd
 * that drains the queue on the loop thread and calls the user's callback per message.
 *
 * It does not run or own the loop, and it is the only file of subscribe/ that knows
 * libuv (STYLE.md "Layers": event loops belong to the runtime; this is the small adapter
 * any loop owner can use). docs/subscribe.md "Channels and event loops".
 */
#include "subscribe/subscribe.h"

#include "base/base.h"

#include <uv.h>

struct dl_sub_uv {
    uv_poll_t poll; /* first member: the handle's memory is the watcher's */
    dl_sub_t *sub;  /* a reference held by the watcher */
    dl_sub_cb cb;
    void *udata;
    bool closing;
};

static void on_closed(uv_handle_t *h) {
    dl_sub_uv_t *w = (dl_sub_uv_t *)h;
    dl_sub_unref(w->sub);
    dl_free(w);
}

void dl_sub_uv_stop(dl_sub_uv_t *w) {
    if (!w || w->closing)
        return;
    w->closing = true;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, on_closed);
}

static void on_ready(uv_poll_t *h, int status, int events) {
    dl_sub_uv_t *w = (dl_sub_uv_t *)h;
    (void)events;
    if (status < 0) {
        dl_sub_uv_stop(w);
        return;
    }
    /* Level-triggered fd (sub.c design note 2): take everything now waiting. */
    for (;;) {
        dl_delta_t *d = NULL;
        int rc = dl_sub_next(w->sub, 0, &d, NULL);
        if (rc || !d) {
            if (rc)
                dl_sub_uv_stop(w);
            return;
        }
        bool end = dl_delta_kind(d) == DL_DELTA_END;
        w->cb(w->sub, d, w->udata);
        dl_delta_unref(d);
        if (end || w->closing) {
            dl_sub_uv_stop(w);
            return;
        }
    }
}

int dl_sub_uv_start(uv_loop_t *loop, dl_sub_t *s, dl_sub_cb cb, void *udata, dl_sub_uv_t **out,
                    dl_error_t *err) {
    *out = NULL;
    if (!loop || !s || !cb || dl_sub_fd(s) < 0)
        return dl_error_set(err, DL_EINVAL,
                            "dl_sub_uv_start: needs a loop, a callback and a "
                            "channel subscription");
    dl_sub_uv_t *w = dl_calloc(1, sizeof *w);
    if (!w)
        return dl_error_set(err, DL_ENOMEM, "dl_sub_uv_start: out of memory");
    int urc = uv_poll_init(loop, &w->poll, dl_sub_fd(s));
    if (urc) {
        dl_free(w);
        return dl_error_set(err, DL_EIO, "uv_poll_init: %s", uv_strerror(urc));
    }
    w->sub = dl_sub_ref(s);
    w->cb = cb;
    w->udata = udata;
    urc = uv_poll_start(&w->poll, UV_READABLE, on_ready);
    if (urc) {
        w->closing = true;
        uv_close((uv_handle_t *)&w->poll, on_closed);
        return dl_error_set(err, DL_EIO, "uv_poll_start: %s", uv_strerror(urc));
    }
    *out = w;
    return 0;
}
