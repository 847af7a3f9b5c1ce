global using Billing.Catalog;
global using Billing.TestKit;
global using NUnit.Framework;
