#!/usr/bin/env python3
"""Writes N signed Stripe events, one "Stripe-Signature<TAB>body" per line, for webhooks.lua.

Fresh timestamps (Billing accepts 300 s either way), unique event ids, HMAC-SHA256 with the webhook secret over
"{t}.{body}" exactly like Stripe. The events are of types Billing stores and acknowledges but does not act on
(invoice.finalized, payment_intent.succeeded, …) in Stripe's endive shapes, so the figure is the ingest path
(signature check, envelope parse, INSERT … ON CONFLICT DO NOTHING, commit, 200) and leaves no work behind.
usage: gen_events.py N SECRET OUT
"""
import hashlib, hmac, json, os, sys, time

n, secret, out = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
run = os.environ.get("RUN") or os.urandom(4).hex()
now = int(time.time())
types = ["invoice.finalized", "payment_intent.succeeded", "invoice.created", "customer.updated"]
with open(out, "w") as f:
    for i in range(n):
        evt_type = types[i % len(types)]
        obj_id = f"in_bench{run}{i:08d}"
        obj = {
            "id": obj_id, "object": "invoice", "account_country": "US", "account_name": "Billing bench",
            "amount_due": 500, "amount_paid": 500, "amount_remaining": 0, "attempt_count": 1, "attempted": True,
            "billing_reason": "subscription_cycle", "collection_method": "charge_automatically", "created": now,
            "currency": "usd", "customer": f"cus_bench{run}{i % 5000:05d}", "customer_email": f"u{i % 5000}@example.com",
            "hosted_invoice_url": f"http://127.0.0.1:12111/invoices/{obj_id}",
            "lines": {"object": "list", "data": [{"id": f"il_bench{run}{i:08d}", "object": "line_item", "amount": 500,
                      "currency": "usd", "description": "1 × Pro (at $5.00 / month)",
                      "period": {"end": now + 2678400, "start": now}, "quantity": 1}],
                      "has_more": False, "url": f"/v1/invoices/{obj_id}/lines"},
            "livemode": False, "metadata": {}, "number": f"BENCH-{i:06d}",
            "parent": {"type": "subscription_details", "subscription_details": {"metadata": {"userId": f"u{i % 5000}", "planId": "pro"},
                       "subscription": f"sub_bench{run}{i % 5000:05d}"}},
            "period_end": now, "period_start": now - 2678400, "status": "paid",
            "status_transitions": {"finalized_at": now, "paid_at": now, "voided_at": None},
            "subtotal": 500, "total": 500,
        }
        body = json.dumps({"id": f"evt_bench{run}{i:08d}", "object": "event", "api_version": "2026-10-28.endive",
                           "created": now, "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
                           "request": {"id": None, "idempotency_key": None}, "type": evt_type}, separators=(",", ":"))
        t = int(time.time())
        sig = hmac.new(secret, f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
        f.write(f"t={t},v1={sig}\t{body}\n")
