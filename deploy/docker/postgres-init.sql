-- One database per bounded context (ARCHITECTURE.md); each service migrates its own at start.
CREATE DATABASE billing_subscriptions;
CREATE DATABASE billing_payments;
CREATE DATABASE billing_usage;
CREATE DATABASE billing_wallet;
