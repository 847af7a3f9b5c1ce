using Billing.StripeSimulator;

var app = SimulatorApp.Build(args);
app.Run();
