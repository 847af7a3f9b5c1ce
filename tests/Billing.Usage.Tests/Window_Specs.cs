using Billing.Catalog;
using Billing.Usage.Core.Subscribers;
using Billing.Usage.Core.Windows;

namespace Billing.Usage.Tests;

[TestFixture]
public class Quota_windows
{
    private static DateTimeOffset At(string iso) => DateTimeOffset.Parse(iso, System.Globalization.CultureInfo.InvariantCulture).ToUniversalTime();

    private static SubscriberState Subscribed(string anchor, string? periodStart = null, string? periodEnd = null) => new()
    {
        UserId = "u1",
        PlanId = "pro",
        SubscriptionId = "sub_1",
        Status = "active",
        Access = SubscriberAccess.Full,
        Anchor = At(anchor),
        PeriodStart = periodStart is null ? null : At(periodStart),
        PeriodEnd = periodEnd is null ? null : At(periodEnd),
    };

    private static readonly SubscriberState Free = new() { UserId = "u1", PlanId = "free", Access = SubscriberAccess.None };

    private static MeterAllowance Allowance(string window) => new() { Meter = "ai.generation", Limit = 250, Window = window };

    [Test]
    public void A_day_window_runs_from_UTC_midnight_to_midnight()
    {
        var w = UsageWindows.Current(Allowance("day"), Free, At("2026-03-10T23:59:59.999Z"));
        Assert.That(w, Is.EqualTo(new UsageWindow(At("2026-03-10T00:00:00Z"), At("2026-03-11T00:00:00Z"))));
    }

    [Test]
    public void A_day_window_resets_exactly_at_midnight_UTC_whatever_the_callers_offset()
    {
        var w = UsageWindows.Current(Allowance("day"), Free, DateTimeOffset.Parse("2026-03-11T01:00:00+01:00", System.Globalization.CultureInfo.InvariantCulture));
        Assert.That(w.Start, Is.EqualTo(At("2026-03-11T00:00:00Z")));
        Assert.That(w.End, Is.EqualTo(At("2026-03-12T00:00:00Z")));
    }

    [TestCase("2026-01-31T10:00:00Z", "2026-01-31T10:00:00Z", "2026-02-28T10:00:00Z")]
    [TestCase("2026-02-15T00:00:00Z", "2026-01-31T10:00:00Z", "2026-02-28T10:00:00Z")]
    [TestCase("2026-02-28T10:00:00Z", "2026-02-28T10:00:00Z", "2026-03-31T10:00:00Z")]
    [TestCase("2026-03-31T09:59:59Z", "2026-02-28T10:00:00Z", "2026-03-31T10:00:00Z")]
    [TestCase("2026-03-31T10:00:00Z", "2026-03-31T10:00:00Z", "2026-04-30T10:00:00Z")]
    [TestCase("2026-05-01T00:00:00Z", "2026-04-30T10:00:00Z", "2026-05-31T10:00:00Z")]
    [TestCase("2028-02-29T12:00:00Z", "2028-02-29T10:00:00Z", "2028-03-31T10:00:00Z")]
    public void A_month_anchored_on_the_31st_falls_back_to_the_last_day_and_returns_to_the_31st(string now, string start, string end)
    {
        var w = UsageWindows.Current(Allowance("month"), Subscribed("2026-01-31T10:00:00Z"), At(now));
        Assert.That(w, Is.EqualTo(new UsageWindow(At(start), At(end))));
    }

    [TestCase("2026-01-31T09:59:59.800Z")]
    [TestCase("2026-01-31T09:59:55Z")]
    public void A_spend_a_moment_before_the_anchor_is_in_the_first_window_not_the_month_before(string now)
    {
        // Stripe's clock set the subscription's start; ours may be a little behind it. The CI saw the spend land in
        // [Dec 31, Jan 31) and vanish from /api/usage/me a moment later.
        var w = UsageWindows.Current(Allowance("month"), Subscribed("2026-01-31T10:00:00Z"), At(now));
        Assert.That(w, Is.EqualTo(new UsageWindow(At("2026-01-31T10:00:00Z"), At("2026-02-28T10:00:00Z"))));
        var sameWindowLater = UsageWindows.Current(Allowance("month"), Subscribed("2026-01-31T10:00:00Z"), At("2026-01-31T10:00:01Z"));
        Assert.That(sameWindowLater, Is.EqualTo(w));
    }

    [Test]
    public void A_yearly_price_still_resets_the_monthly_allowance_every_month()
    {
        // A yearly subscription: the period is a year, the month window steps monthly from the start.
        var state = Subscribed("2026-04-15T08:30:00Z", "2026-04-15T08:30:00Z", "2027-04-15T08:30:00Z");
        var w = UsageWindows.Current(Allowance("month"), state, At("2026-09-20T00:00:00Z"));
        Assert.That(w, Is.EqualTo(new UsageWindow(At("2026-09-15T08:30:00Z"), At("2026-10-15T08:30:00Z"))));
    }

    [Test]
    public void A_quarterly_price_also_resets_monthly()
    {
        var state = Subscribed("2026-01-10T00:00:00Z", "2026-01-10T00:00:00Z", "2026-04-10T00:00:00Z");
        var w = UsageWindows.Current(Allowance("month"), state, At("2026-03-09T23:59:59Z"));
        Assert.That(w, Is.EqualTo(new UsageWindow(At("2026-02-10T00:00:00Z"), At("2026-03-10T00:00:00Z"))));
    }

    [Test]
    public void A_free_user_has_the_calendar_month()
    {
        var w = UsageWindows.Current(Allowance("month"), Free, At("2026-02-14T12:00:00Z"));
        Assert.That(w, Is.EqualTo(new UsageWindow(At("2026-02-01T00:00:00Z"), At("2026-03-01T00:00:00Z"))));
    }

    [Test]
    public void A_period_window_is_the_billing_period()
    {
        var state = Subscribed("2026-01-05T00:00:00Z", "2026-03-05T00:00:00Z", "2026-04-05T00:00:00Z");
        var w = UsageWindows.Current(Allowance("period"), state, At("2026-03-20T00:00:00Z"));
        Assert.That(w, Is.EqualTo(new UsageWindow(At("2026-03-05T00:00:00Z"), At("2026-04-05T00:00:00Z"))));
    }

    [Test]
    public void A_period_window_stays_the_last_period_until_the_renewal_arrives()
    {
        var state = Subscribed("2026-01-05T00:00:00Z", "2026-03-05T00:00:00Z", "2026-04-05T00:00:00Z");
        var late = UsageWindows.Current(Allowance("period"), state, At("2026-04-06T00:00:00Z"));
        Assert.That(late.End, Is.EqualTo(At("2026-04-05T00:00:00Z")), "no renewal seen: the window does not reset by itself");

        var renewed = SubscriberTransitions.Renew(state, "sub_1", At("2026-04-05T00:00:00Z"), At("2026-05-05T00:00:00Z"), At("2026-04-05T01:00:00Z"));
        var next = UsageWindows.Current(Allowance("period"), renewed, At("2026-04-06T00:00:00Z"));
        Assert.That(next, Is.EqualTo(new UsageWindow(At("2026-04-05T00:00:00Z"), At("2026-05-05T00:00:00Z"))));
    }

    [Test]
    public void An_ended_subscriber_is_back_on_the_calendar_month()
    {
        var state = Subscribed("2026-01-31T10:00:00Z") with { Access = SubscriberAccess.None, PlanId = "free" };
        var w = UsageWindows.Current(Allowance("month"), state, At("2026-02-14T12:00:00Z"));
        Assert.That(w.Start, Is.EqualTo(At("2026-02-01T00:00:00Z")));
    }
}
