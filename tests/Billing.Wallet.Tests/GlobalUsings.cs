global using Billing.TestKit;
global using NUnit.Framework;
