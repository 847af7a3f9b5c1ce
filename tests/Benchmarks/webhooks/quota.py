#!/usr/bin/env python3
"""Webhook-to-quota: how long from Stripe's webhooks reaching the gateway until GET /api/usage/me shows the quota.

K users each pay a Pro checkout on the simulator with webhook delivery switched off (/_sim/config), so Billing hears
nothing yet. Their events are then read from /_sim/events and sent signed through the gateway, one user at a time
(or PARALLEL users at once), in the order Stripe created them; the clock starts at the first webhook of a user and
stops when /api/usage/me (polled every POLL_MS over a kept-alive connection) shows the plan's 250.
env: GW SIM SECRET JWT_KEY [JWT_ISSUER JWT_AUDIENCE] K PARALLEL POLL_MS
"""
import base64, hashlib, hmac, http.client, json, os, sys, threading, time, urllib.parse, uuid

GW = urllib.parse.urlparse(os.environ["GW"])
SIM = urllib.parse.urlparse(os.environ["SIM"])
SECRET = os.environ["SECRET"].encode()
JWT_KEY = os.environ["JWT_KEY"].encode()
K = int(os.environ.get("K", "20"))
PARALLEL = int(os.environ.get("PARALLEL", "1"))
POLL = float(os.environ.get("POLL_MS", "2")) / 1000
LIMIT = int(os.environ.get("QUOTA", "250"))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(user):
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"iss": os.environ.get("JWT_ISSUER", "billing-local"), "aud": os.environ.get("JWT_AUDIENCE", "billing"),
                              "sub": user, "iat": now, "nbf": now, "exp": now + 3600}).encode())
    sig = b64(hmac.new(JWT_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{sig}"


def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def gw():
    return http.client.HTTPConnection(GW.hostname, GW.port, timeout=30)


def sim():
    return http.client.HTTPConnection(SIM.hostname, SIM.port, timeout=30)


def set_delivery(on):
    status, _ = call(sim(), "POST", "/_sim/config", json.dumps({"deliverWebhooks": on}), {"Content-Type": "application/json"})
    assert status == 200, status


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def main():
    run = uuid.uuid4().hex[:6]
    users = [f"bench-q{run}-{i}" for i in range(K)]
    set_delivery(False)
    try:
        g, s = gw(), sim()
        for u in users:
            status, body = call(g, "POST", "/api/subscriptions/checkout", json.dumps({"planId": "pro", "interval": "month"}),
                                {"Authorization": "Bearer " + token(u), "Content-Type": "application/json"})
            assert status == 200, (status, body)
            session = json.loads(body)["checkoutSessionId"]
            status, _ = call(s, "POST", f"/checkout/{session}/pay", "card=4242424242424242", {"Content-Type": "application/x-www-form-urlencoded"})
            assert status == 303, status
        status, body = call(s, "GET", "/_sim/events")
        events = json.loads(body)["data"][::-1]  # oldest first
    finally:
        set_delivery(True)

    customers = {}
    for e in events:
        obj = e["event"]["data"]["object"]
        text = json.dumps(obj)
        for u in users:
            if f'"{u}"' in text and isinstance(obj.get("customer"), str):
                customers[obj["customer"]] = u
    per_user = {u: [] for u in users}
    for e in events:
        obj = e["event"]["data"]["object"]
        c = obj.get("customer") if isinstance(obj.get("customer"), str) else (obj["id"] if obj.get("object") == "customer" else None)
        if c in customers:
            per_user[customers[c]].append(e["event"])

    results, errors = {}, []
    lock = threading.Lock()

    def one(u):
        conn = gw()
        auth = {"Authorization": "Bearer " + token(u)}
        start = time.perf_counter()
        for evt in per_user[u]:
            body = json.dumps(evt, separators=(",", ":"))
            t = int(time.time())
            sig = hmac.new(SECRET, f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
            status, answer = call(conn, "POST", "/webhooks/stripe", body, {"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={sig}"})
            if status != 200:
                with lock:
                    errors.append(f"{u} {evt['type']}: {status} {answer[:200]!r}")
        sent = time.perf_counter()
        deadline = start + 30
        while True:
            status, answer = call(conn, "GET", "/api/usage/me", headers=auth)
            if status == 200 and any(m.get("limit") == LIMIT for m in json.loads(answer)["meters"]):
                break
            if time.perf_counter() > deadline:
                with lock:
                    errors.append(f"{u}: no quota after 30 s")
                return
            time.sleep(POLL)
        done = time.perf_counter()
        with lock:
            results[u] = ((done - start) * 1000, (sent - start) * 1000, len(per_user[u]))

    pending = list(users)
    while pending:
        batch, pending = pending[:PARALLEL], pending[PARALLEL:]
        threads = [threading.Thread(target=one, args=(u,)) for u in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    for e in errors:
        print("ERROR", e, file=sys.stderr)
    if not results:
        print("RESULT webhook_to_quota: no user got the quota", file=sys.stderr)
        sys.exit(1)
    total = [r[0] for r in results.values()]
    send = [r[1] for r in results.values()]
    n_events = sum(r[2] for r in results.values())
    print(f"RESULT webhook_to_quota users={len(results)}/{K} parallel={PARALLEL} webhooks={n_events} "
          f"p50_ms={pct(total, 50):.0f} p95_ms={pct(total, 95):.0f} max_ms={max(total):.0f} "
          f"(sending a user's {n_events // len(results)} webhooks took p50 {pct(send, 50):.0f} ms) errors={len(errors)}")
    sys.exit(1 if errors else 0)


main()
