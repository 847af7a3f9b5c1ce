#!/usr/bin/env python3
"""Prints what deploy/billing reconcile, verify and overage-items got from the admin endpoints; exits 1 on a difference."""
import json
import sys


def reconcile(answer: str) -> int:
    r = json.loads(answer)
    if "ran" not in r:
        print(answer)
        return 1
    if not r["ran"]:
        print("another reconciliation is running; try again in a moment")
        return 0
    print(f"reconciled: {r['scanned']} Stripe events read, {r['recovered']} recovered, cursor {r['cursor']}")
    for event_id in r["recoveredIds"]:
        print("  recovered", event_id)
    return 0


def verify(subs_answer: str, wallets_answer: str, usage_answer: str = "", overage_answer: str = "") -> int:
    subs, wallets = json.loads(subs_answer), json.loads(wallets_answer)
    usage = json.loads(usage_answer) if usage_answer else None
    try:
        overage = json.loads(overage_answer) if overage_answer else None
    except ValueError:
        overage = {"unreadable": overage_answer}
    if "ok" not in subs:
        print("subscriptions:", subs_answer)
        return 2
    if "ok" not in wallets:
        print("wallets:", wallets_answer)
        return 2
    bad = 0
    print(f"subscriptions: {subs['checkedCount']} live subscription(s) compared with Stripe")
    for d in subs["differences"]:
        bad += 1
        print(f"  DIFF {d['subscriptionId']} (user {d['userId']}) {d['field']}: Billing {d['billing']} / Stripe {d['stripe']}")
    print(f"wallets: {wallets['walletsChecked']} wallet(s): balance == sum of ledger, and >= what the expiring lots hold")
    for m in wallets["mismatches"]:
        bad += 1
        print(f"  DIFF wallet {m['userId']}: balance {m['balance']} / ledger {m['ledgerSum']} / expiring lots {m.get('expiringRemaining', 0)}")
    if usage is not None:
        if "ok" not in usage:
            print("usage:", usage_answer)
            return 2
        print(f"usage: {usage['tokenReturnsOwed']} token return(s) owed to wallets, {usage['tokenClaimsOpen']} token claim(s) open")
        if usage["tokenReturnsOwedLate"]:
            bad += usage["tokenReturnsOwedLate"]
            print(f"  LATE {usage['tokenReturnsOwedLate']} return(s) owed for over 5 minutes (oldest since {usage['oldestReturnOwedSince']}): is Wallet refusing them? see Usage's log")
        if usage["tokenClaimsStuck"]:
            bad += usage["tokenClaimsStuck"]
            print(f"  LATE {usage['tokenClaimsStuck']} token-paid consume(s) unfinished past twice the claim timeout: see Usage's log")
        if usage.get("overageUnreportedLate"):
            bad += usage["overageUnreportedLate"]
            print(f"  LATE {usage['overageUnreportedLate']} billed overage spend(s) Stripe has not taken for over 30 minutes (oldest from {usage['oldestOverageSince']}; last error: {usage.get('overageLastError')}): not on any invoice until they are")
        if usage["reservationClaimsStuck"]:
            bad += usage["reservationClaimsStuck"]
            print(f"  LATE {usage['reservationClaimsStuck']} token-backed reservation claim(s) past their expiry: see Usage's log")
    if overage is not None:
        if "ok" not in overage:
            print("overage check:", overage_answer)
            return 2
        print(f"overage: {overage['checked']} customer meter(s) with billed overage reported from {overage['from']} to {overage['to']}, "
              f"compared with what Stripe's meters counted")
        for d in overage["differences"]:
            bad += 1
            users = ", ".join(d["userIds"])
            if d.get("error"):
                print(f"  DIFF customer {d['customerId']} (user {users}) {d['eventName']}: Billing reported {d['billingUnits']}; Stripe: {d['error']}")
            else:
                print(f"  DIFF customer {d['customerId']} (user {users}) {d['eventName']}: Billing reported {d['billingUnits']} / Stripe's meter counted {d['stripeUnits']}"
                      " (see the meter's error reports in Stripe's Dashboard)")
        if overage.get("more"):
            print(f"  only the {overage['checked']} with the latest overage were checked: GET /api/admin/usage/overage-check?limit=1000 checks more")
    print("verify: everything matches" if bad == 0 else f"verify: {bad} difference(s)")
    return 1 if bad else 0


def overage_items(answer: str) -> int:
    r = json.loads(answer)
    if "applied" not in r:
        print(answer)
        return 2
    print(f"overage items: {r['checkedCount']} live subscription(s) checked")
    for s in r["subscriptions"]:
        print(f"  {s['outcome']}: {s['subscriptionId']} (user {s['userId']}) {', '.join(s['add'])}")
    pending = sum(1 for s in r["subscriptions"] if s["outcome"] == "would add" or s["outcome"].startswith(("skipped", "failed")))
    if pending:
        print(f"{pending} subscription(s) lack the metered prices of their plan's billed overage"
              + ("; 'deploy/billing overage-items --apply' adds them" if not r["applied"] else " (see above)"))
    return 1 if pending else 0


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "reconcile":
        sys.exit(reconcile(sys.argv[2]))
    if mode == "overage-items":
        sys.exit(overage_items(sys.argv[2]))
    sys.exit(verify(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "", sys.argv[5] if len(sys.argv) > 5 else ""))
