global using Billing.Payments.Core.Subscriptions;
global using Billing.Payments.Core.Webhooks;
global using NUnit.Framework;
global using Billing.TestKit;
