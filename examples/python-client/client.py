#!/usr/bin/env python3
"""A deltalog client in Python, over the TCP protocol (docs/protocol.md), standard library
only. It transacts a schema and some facts, runs a query, subscribes to a live query,
changes the data from a second connection and prints the diffs it receives.

Usage: client.py HOST:PORT        talk to a running `deltalog serve`
       client.py --spawn DELTALOG start `DELTALOG serve --memory` on a free port first
Exits 1 if a reply or a diff is not what the protocol promises."""
import json, socket, subprocess, sys


class Conn:
    """One protocol connection: one JSON object per line, both ways."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.file = self.sock.makefile("r", encoding="utf-8")
        self.next_id = 0
        self.pending = []  # subscription messages read while waiting for a reply

    def request(self, op, **fields):
        self.next_id += 1
        msg = dict(op=op, id=self.next_id, **fields)
        self.sock.sendall((json.dumps(msg) + "\n").encode())
        while True:  # replies come in request order; subscription messages may come between
            line = json.loads(self.file.readline())
            if line.get("id") == self.next_id:
                if not line["ok"]:
                    raise RuntimeError("%s: %s" % (line["error"]["code"], line["error"]["message"]))
                return line
            self.pending.append(line)

    def message(self):
        """The next subscription message (diff or end)."""
        if self.pending:
            return self.pending.pop(0)
        return json.loads(self.file.readline())


def check(cond, what):
    if not cond:
        print("client.py: unexpected: " + what, file=sys.stderr)
        sys.exit(1)


def main():
    server = None
    if len(sys.argv) == 3 and sys.argv[1] == "--spawn":
        server = subprocess.Popen([sys.argv[2], "serve", "--memory", "--listen", "127.0.0.1:0"],
                                  stderr=subprocess.PIPE, text=True)
        line = server.stderr.readline()  # "deltalog: serving protocol 1 on HOST:PORT"
        addr = line.strip().rsplit(" ", 1)[1]
    elif len(sys.argv) == 2:
        addr = sys.argv[1]
    else:
        sys.exit(__doc__)
    try:
        run(addr)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)


def run(addr):
    a, b = Conn(addr), Conn(addr)
    a.request("transact", tx="""[{:db/ident :account/name :db/valueType :db.type/string
                                  :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
                                 {:db/ident :account/balance :db/valueType :db.type/long
                                  :db/cardinality :db.cardinality/one}]""")
    # The JSON form of transaction data works too (docs/storage.md).
    r = a.request("transact", tx=[{"account/name": "ann", "account/balance": 100},
                                  {"account/name": "bob", "account/balance": -20}])
    print("committed t=%d" % r["t"])

    q = "[:find ?n ?b :where [?a :account/name ?n] [?a :account/balance ?b]]"
    rows = a.request("query", q=q)["rows"]
    print("query:", sorted(rows))
    check(sorted(rows) == [["ann", 100], ["bob", -20]], "query rows %r" % rows)

    overdrawn = "[:find ?n :where [?a :account/name ?n] [?a :account/balance ?b] [(< ?b 0)]]"
    sub = a.request("subscribe", q=overdrawn)["sub"]
    snap = a.message()
    print("snapshot:", snap["diff"])
    check(snap["sub"] == sub and snap["diff"] == [[["bob"], 1]], "snapshot %r" % snap)

    # A second connection changes the data; the subscriber sees exactly the change.
    b.request("transact", tx='[[:db/add [:account/name "ann"] :account/balance -5]]')
    m = a.message()
    print("diff at t=%d:" % m["t"], m["diff"])
    check(m["diff"] == [[["ann"], 1]], "diff %r" % m)
    b.request("transact", tx='[[:db/add [:account/name "bob"] :account/balance 50]]')
    m = a.message()
    print("diff at t=%d:" % m["t"], m["diff"])
    check(m["diff"] == [[["bob"], -1]], "diff %r" % m)

    a.request("unsubscribe", sub=sub)
    end = a.message()
    check(end.get("end") is True, "end message %r" % end)
    print("unsubscribed")


if __name__ == "__main__":
    main()
