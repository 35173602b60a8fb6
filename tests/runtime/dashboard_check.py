#!/usr/bin/env python3
"""dashboard_check.py: drives the live dashboard in headless Chromium (Debian's `chromium`)
over the Chrome DevTools Protocol, with the standard library only (a minimal WebSocket
client below), against a running `deltalog demo`:

  1. loads the page and waits until every view shows a final result;
  2. sends a transaction over the TCP protocol (a new customer in region "region-ci" with an
     open order of amount 987654) and checks that the page's numbers change: the region chart
     gains region-ci with that revenue, the ten-largest table leads with the order, and each
     view becomes final at a system time >= the transaction's;
  3. types a query into the box and checks its live result, then a bad query and checks that
     the server's error is shown, then a transaction that changes the typed query's result;
  4. saves a screenshot.

When the server answers `subscribe` (probed over TCP), every view must be a subscription;
otherwise the page's polling fallback is accepted and reported.
Run by tests/runtime/test_dashboard.c (ctest runtime.dashboard_chromium). Exit 0 when every
check holds; otherwise 1 with the failed check on stderr.
usage: dashboard_check.py --url http://HOST:PORT/ --proto HOST:PORT --shot FILE.png
"""
import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

DEADLINE = 30.0  # seconds for any one wait (a failsafe, not a pacing sleep)


def fail(msg):
    print("dashboard_check: FAILED: " + msg, file=sys.stderr)
    sys.exit(1)


class WS:
    """A minimal RFC 6455 client: text frames, masking, fragmentation, ping."""

    def __init__(self, url):
        assert url.startswith("ws://")
        rest = url[5:]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=DEADLINE)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key))
        self.sock.sendall(req.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                fail("DevTools WebSocket handshake: connection closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            fail("DevTools WebSocket handshake refused: %r" % head[:200])

    def send(self, text):
        data = text.encode()
        n = len(data)
        hdr = bytearray([0x81])
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr.append(0x80 | 126)
            hdr += n.to_bytes(2, "big")
        else:
            hdr.append(0x80 | 127)
            hdr += n.to_bytes(8, "big")
        mask = os.urandom(4)
        hdr += mask
        self.sock.sendall(bytes(hdr) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                fail("DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        parts = []
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            payload = self._read(n)
            if op == 0x9:  # ping
                continue
            if op == 0x8:
                fail("DevTools connection closed by the browser")
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()


class CDP:
    def __init__(self, ws_url):
        self.ws = WS(ws_url)
        self.next = 0

    def call(self, method, **params):
        self.next += 1
        mid = self.next
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == mid:
                if "error" in m:
                    fail("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            fail("page script error: %s" % json.dumps(r["exceptionDetails"])[:500])
        return r["result"].get("value")


class Proto:
    """The deltalog protocol over TCP: one JSON line each way."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=DEADLINE)
        self.f = self.sock.makefile("rb")
        self.id = 0

    def request(self, **msg):
        self.id += 1
        msg["id"] = self.id
        self.sock.sendall((json.dumps(msg) + "\n").encode())
        while True:
            line = self.f.readline()
            if not line:
                fail("the protocol connection closed")
            r = json.loads(line)
            if r.get("id") == self.id:
                return r


STATE_JS = """(() => {
  const out = {};
  if (!document.getElementById('conn') || !document.getElementById('qerror')) return {conn: null};
  for (const [name, v] of Object.entries(window.deltalogViews || {})) {
    // What the page shows (painted on the next animation frame), not only the model.
    out[name] = {t: v.el.dataset.t === '' || v.el.dataset.t === undefined ? null : Number(v.el.dataset.t),
                 final: v.el.dataset.final === 'true', rows: Number(v.el.dataset.rows || 0),
                 mode: v.el.dataset.mode || '', ended: v.ended, modelT: v.t,
                 list: v.list().slice(0, 4000)};
  }
  out.conn = document.getElementById('conn').dataset.state;
  out.regionsText = document.querySelector('#view-regions .chart').textContent;
  out.topText = document.querySelector('#view-top tbody').textContent;
  out.topFirst = (document.querySelector('#view-top tbody tr') || {}).textContent || '';
  out.customText = document.querySelector('#qresult').textContent;
  const e = document.getElementById('qerror');
  out.error = e.hidden ? null : {code: e.dataset.code, text: e.textContent};
  out.clocks = [...document.querySelectorAll('.clock')].map((c) => c.textContent);
  return out;
})()"""


def wait_for(cdp, what, pred):
    end = time.monotonic() + DEADLINE
    st = None
    while time.monotonic() < end:
        st = cdp.eval(STATE_JS)
        if pred(st):
            return st
        time.sleep(0.05)  # polling the page's state; the deadline is the failsafe
    fail("timed out waiting for: %s; last state: %s" % (what, json.dumps(
        {k: (v if k != "list" else None) for k, v in (st or {}).items()}, default=str)[:1500]))


def views_final(st, names, min_t=0):
    return all(st.get(n) and st[n]["final"] and st[n]["t"] is not None and st[n]["t"] >= min_t
               for n in names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--shot", required=True)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    a = ap.parse_args()
    if not os.access(a.chromium, os.X_OK):
        fail("chromium not found at %s (scripts/setup installs Debian's chromium)" % a.chromium)

    proto = Proto(a.proto)
    probe = proto.request(op="subscribe", q="[:find ?s :where [_ :order/status ?s]]")
    has_subs = bool(probe.get("ok"))
    if has_subs:
        proto.request(op="unsubscribe", sub=probe["sub"])
        # Subscription messages may follow on this connection: a fresh one for requests.
        proto = Proto(a.proto)
    print("dashboard_check: server subscriptions: %s" % ("yes" if has_subs else
          "no (%s) -> the page's polling fallback" % probe.get("error", {}).get("code")))

    udir = tempfile.mkdtemp(prefix="dl-chromium-")
    cmd = [a.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + udir,
           "--remote-debugging-port=0", "--window-size=1280,1000", "about:blank"]
    br = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    try:
        ws_url = None
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end and ws_url is None:
            line = br.stderr.readline().decode(errors="replace")
            if not line and br.poll() is not None:
                fail("chromium exited with %s before DevTools was up" % br.returncode)
            if "DevTools listening on " in line:
                ws_url = line.split("DevTools listening on ", 1)[1].strip()
        if not ws_url:
            fail("chromium did not print its DevTools address")
        port = ws_url.split("//", 1)[1].split("/", 1)[0]
        with urllib.request.urlopen("http://%s/json/list" % port, timeout=DEADLINE) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        if not pages:
            fail("no page target in chromium")
        cdp = CDP(pages[0]["webSocketDebuggerUrl"])
        cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000,
                 deviceScaleFactor=1, mobile=False)
        cdp.call("Page.enable")
        cdp.call("Page.navigate", url=a.url)

        # 1. every view shows a final result
        names = ["regions", "top", "status", "custom"]
        st = wait_for(cdp, "every view final", lambda s: s.get("conn") == "open" and
                      views_final(s, names) and s["regions"]["rows"] > 0)
        for n in names:
            if has_subs and not st[n]["mode"].startswith("subscription"):
                fail("view %s is not a subscription although the server has them: %s"
                     % (n, st[n]["mode"]))
        print("dashboard_check: loaded; t=%s; modes: %s" % (
            st["regions"]["t"], sorted({st[n]["mode"] for n in names})))
        before = {r[0]: r for r in st["regions"]["list"]}
        if "region-ci" in before:
            fail("region-ci exists before the transaction (is this a fresh store?)")

        # 2. a transaction over the protocol changes the page's numbers
        tx = proto.request(op="transact", tx=[
            {"db/id": "c", "customer/id": 9000001, "customer/region": "region-ci"},
            {"order/id": 424242, "order/customer": "c", "order/amount": 987654,
             "order/status": "open"}])
        if not tx.get("ok"):
            fail("transaction refused: %s" % tx)
        t1 = tx["t"]
        st = wait_for(cdp, "the page at t>=%d" % t1, lambda s: views_final(s, names[:3], t1))
        after = {r[0]: r for r in st["regions"]["list"]}
        if after.get("region-ci") != ["region-ci", 987654, 1]:
            fail("regions view after the transaction: %s" % after.get("region-ci"))
        if "region-ci" not in st["regionsText"] or "987,654" not in st["regionsText"]:
            fail("the region chart does not show region-ci / 987,654: %r" % st["regionsText"])
        if "424242" not in st["topFirst"] or "987,654" not in st["topFirst"]:
            fail("the largest open order is not first in its table: %r" % st["topFirst"])
        print("dashboard_check: after transaction t=%d the page shows region-ci 987,654 and "
              "order #424242 first" % t1)

        # 3. a typed query shows its live result; a bad one shows the server's error
        def type_query(text):
            cdp.eval("(() => { const t = document.getElementById('qtext'); t.focus(); "
                     "t.select(); return true; })()")
            cdp.call("Input.insertText", text=text)
            cdp.eval("document.getElementById('qrun').click(), true")

        type_query("[:find ?id ?amount :where [?o :order/amount ?amount] "
                   "[?o :order/id ?id] [?o :order/customer ?c] [?c :customer/region \"region-ci\"]]")
        st = wait_for(cdp, "the typed query's result", lambda s: s["custom"]["final"] and
                      s["custom"]["list"] == [[424242, 987654]] and "987654" in s["customText"])
        tx2 = proto.request(op="transact", tx=[["add", ["order/id", 424242], "order/amount", 555555]])
        if not tx2.get("ok"):
            fail("second transaction refused: %s" % tx2)
        st = wait_for(cdp, "the typed query updated at t>=%d" % tx2["t"],
                      lambda s: s["custom"]["final"] and s["custom"]["t"] >= tx2["t"] and
                      s["custom"]["list"] == [[424242, 555555]])
        print("dashboard_check: typed query live: %s at t=%d" % (st["custom"]["list"], st["custom"]["t"]))
        type_query("[:find ?x :where [?x :no/such-attr 1]]")
        st = wait_for(cdp, "the error of a bad query", lambda s: s["error"] is not None)
        print("dashboard_check: bad query shows: %s" % st["error"]["text"][:120].replace("\n", " "))
        type_query("[:find ?region (count ?c) :where [?c :customer/region ?region]]")
        st = wait_for(cdp, "the final typed query", lambda s: s["error"] is None and
                      s["custom"]["final"] and s["custom"]["rows"] >= 2)

        # 4. the screenshot
        shot = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        os.makedirs(os.path.dirname(os.path.abspath(a.shot)), exist_ok=True)
        with open(a.shot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print("dashboard_check: screenshot %s" % a.shot)
        print("dashboard_check: OK")
    finally:
        br.kill()
        br.wait()
        shutil.rmtree(udir, ignore_errors=True)


if __name__ == "__main__":
    main()
