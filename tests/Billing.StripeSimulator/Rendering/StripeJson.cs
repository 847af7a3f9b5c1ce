using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Infrastructure;

namespace Billing.StripeSimulator.Rendering;

/// <summary>Renders the simulator's objects in Stripe's JSON shapes for API version 2026-10-28.endive.</summary>
public sealed class StripeJson(SimState state)
{
    public const string ApiVersion = "2026-10-28.endive";

    /// <summary>Serializer settings for the wire: no needless escaping of quotes and apostrophes in messages.</summary>
    public static readonly System.Text.Json.JsonSerializerOptions Wire = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private string PublicUrl => state.Options.PublicUrl.TrimEnd('/');

    public static JsonObject Map(IReadOnlyDictionary<string, string>? map)
    {
        var obj = new JsonObject();
        if (map is not null)
        {
            foreach (var (key, value) in map)
            {
                obj[key] = value;
            }
        }
        return obj;
    }

    /// <summary>A decimal the way Stripe writes its <c>*_decimal</c> fields: invariant, no trailing zeros (at most 12 places).</summary>
    public static string DecimalString(decimal value) => value.ToString("0.############", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A whole decimal as an integer, a fractional one as null (Stripe's <c>unit_amount</c> beside <c>unit_amount_decimal</c>).</summary>
    private static long? WholeOrNull(decimal value) => value == decimal.Truncate(value) ? (long)value : null;

    public static JsonObject List(string url, IEnumerable<JsonNode> data, bool hasMore = false) => new()
    {
        ["object"] = "list",
        ["data"] = new JsonArray(data.ToArray()),
        ["has_more"] = hasMore,
        ["url"] = url,
    };

    public JsonObject Customer(Customer c) => new()
    {
        ["id"] = c.Id,
        ["object"] = "customer",
        ["address"] = null,
        ["balance"] = 0,
        ["created"] = c.Created,
        ["currency"] = null,
        ["default_source"] = null,
        ["delinquent"] = false,
        ["description"] = c.Description,
        ["discount"] = null,
        ["email"] = c.Email,
        ["invoice_prefix"] = c.Id.Substring(4, 8).ToUpperInvariant(),
        ["invoice_settings"] = new JsonObject
        {
            ["custom_fields"] = null,
            ["default_payment_method"] = c.PaymentMethodId,
            ["footer"] = null,
            ["rendering_options"] = null,
        },
        ["livemode"] = false,
        ["metadata"] = Map(c.Metadata),
        ["name"] = c.Name,
        ["next_invoice_sequence"] = 1,
        ["phone"] = null,
        ["preferred_locales"] = new JsonArray(),
        ["shipping"] = null,
        ["tax_exempt"] = "none",
        ["test_clock"] = null,
    };

    public JsonObject Product(Product p) => new()
    {
        ["id"] = p.Id,
        ["object"] = "product",
        ["active"] = p.Active,
        ["created"] = p.Created,
        ["default_price"] = p.DefaultPriceId,
        ["description"] = p.Description,
        ["images"] = new JsonArray(),
        ["livemode"] = false,
        ["marketing_features"] = new JsonArray(),
        ["metadata"] = Map(p.Metadata),
        ["name"] = p.Name,
        ["package_dimensions"] = null,
        ["shippable"] = null,
        ["statement_descriptor"] = null,
        ["tax_code"] = null,
        ["type"] = "service",
        ["unit_label"] = null,
        ["updated"] = p.Updated,
        ["url"] = null,
    };

    public JsonObject Price(Price p) => new()
    {
        ["id"] = p.Id,
        ["object"] = "price",
        ["active"] = p.Active,
        ["billing_scheme"] = "per_unit",
        ["created"] = p.Created,
        ["currency"] = p.Currency,
        ["custom_unit_amount"] = null,
        ["livemode"] = false,
        ["lookup_key"] = p.LookupKey,
        ["metadata"] = Map(p.Metadata),
        ["nickname"] = p.Nickname,
        ["product"] = p.ProductId,
        ["recurring"] = p.IsRecurring
            ? new JsonObject
            {
                ["interval"] = p.Interval,
                ["interval_count"] = p.IntervalCount,
                ["meter"] = p.MeterId,
                ["trial_period_days"] = null,
                ["usage_type"] = p.UsageType,
            }
            : null,
        ["tax_behavior"] = "unspecified",
        ["tiers_mode"] = null,
        ["transform_quantity"] = null,
        ["type"] = p.IsRecurring ? "recurring" : "one_time",
        ["unit_amount"] = WholeOrNull(p.UnitPrice),
        ["unit_amount_decimal"] = DecimalString(p.UnitPrice),
    };

    public JsonObject Plan(Price p) => new()
    {
        ["id"] = p.Id,
        ["object"] = "plan",
        ["active"] = p.Active,
        ["amount"] = WholeOrNull(p.UnitPrice),
        ["amount_decimal"] = DecimalString(p.UnitPrice),
        ["billing_scheme"] = "per_unit",
        ["created"] = p.Created,
        ["currency"] = p.Currency,
        ["interval"] = p.Interval,
        ["interval_count"] = p.IntervalCount,
        ["livemode"] = false,
        ["metadata"] = Map(p.Metadata),
        ["meter"] = p.MeterId,
        ["nickname"] = p.Nickname,
        ["product"] = p.ProductId,
        ["tiers_mode"] = null,
        ["transform_usage"] = null,
        ["trial_period_days"] = null,
        ["usage_type"] = p.UsageType,
    };

    public JsonObject Meter(Meter m) => new()
    {
        ["id"] = m.Id,
        ["object"] = "billing.meter",
        ["created"] = m.Created,
        ["customer_mapping"] = new JsonObject { ["event_payload_key"] = m.CustomerPayloadKey, ["type"] = "by_id" },
        ["default_aggregation"] = new JsonObject { ["formula"] = m.Formula },
        ["display_name"] = m.DisplayName,
        ["event_name"] = m.EventName,
        ["event_time_window"] = m.EventTimeWindow,
        ["livemode"] = false,
        ["status"] = m.Status,
        ["status_transitions"] = new JsonObject { ["deactivated_at"] = m.DeactivatedAt },
        ["updated"] = m.Updated,
        ["value_settings"] = new JsonObject { ["event_payload_key"] = m.ValuePayloadKey },
    };

    public JsonObject CheckoutLineItem(CheckoutSession s, LineItem li)
    {
        var price = state.Prices[li.PriceId];
        var product = state.Products[price.ProductId];
        var amount = price.AmountFor(li.Quantity);
        return new JsonObject
        {
            ["id"] = li.Id,
            ["object"] = "item",
            ["adjustable_quantity"] = null,
            ["amount_discount"] = 0,
            ["amount_subtotal"] = amount,
            ["amount_tax"] = 0,
            ["amount_total"] = amount,
            ["currency"] = price.Currency,
            ["description"] = product.Name,
            ["metadata"] = new JsonObject(),
            ["price"] = Price(price),
            ["quantity"] = price.IsMetered ? null : li.Quantity,
        };
    }

    public JsonObject CheckoutSession(CheckoutSession s)
    {
        var obj = new JsonObject
        {
            ["id"] = s.Id,
            ["object"] = "checkout.session",
            ["adaptive_pricing"] = null,
            ["after_expiration"] = null,
            ["allow_promotion_codes"] = s.AllowPromotionCodes,
            ["amount_subtotal"] = s.AmountTotal,
            ["amount_total"] = s.AmountTotal,
            ["automatic_tax"] = new JsonObject { ["enabled"] = false, ["liability"] = null, ["provider"] = null, ["status"] = null },
            ["billing_address_collection"] = null,
            ["cancel_url"] = s.CancelUrl,
            ["client_reference_id"] = s.ClientReferenceId,
            ["client_secret"] = null,
            ["collected_information"] = null,
            ["consent"] = null,
            ["consent_collection"] = null,
            ["created"] = s.Created,
            ["currency"] = s.Currency,
            ["custom_fields"] = new JsonArray(),
            ["custom_text"] = new JsonObject { ["after_submit"] = null, ["shipping_address"] = null, ["submit"] = null, ["terms_of_service_acceptance"] = null },
            ["customer"] = s.CustomerId,
            ["customer_creation"] = s.CustomerId is null && s.Mode == "payment" ? "if_required" : null,
            ["customer_details"] = s.Status == "complete" && s.CustomerId is not null && state.Customers.TryGetValue(s.CustomerId, out var c)
                ? new JsonObject { ["address"] = null, ["email"] = c.Email, ["name"] = c.Name, ["phone"] = null, ["tax_exempt"] = "none", ["tax_ids"] = new JsonArray() }
                : null,
            ["customer_email"] = s.CustomerEmail,
            ["discounts"] = new JsonArray(),
            ["expires_at"] = s.ExpiresAt,
            ["invoice"] = s.InvoiceId,
            ["invoice_creation"] = null,
            ["livemode"] = false,
            ["locale"] = null,
            ["metadata"] = Map(s.Metadata),
            ["mode"] = s.Mode,
            ["payment_intent"] = s.PaymentIntentId,
            ["payment_link"] = null,
            ["payment_method_collection"] = s.Mode == "subscription" ? s.PaymentMethodCollection : null,
            ["payment_method_configuration_details"] = null,
            ["payment_method_options"] = new JsonObject(),
            ["payment_method_types"] = new JsonArray("card"),
            ["payment_status"] = s.PaymentStatus,
            ["phone_number_collection"] = new JsonObject { ["enabled"] = false },
            ["recovered_from"] = null,
            ["saved_payment_method_options"] = null,
            ["setup_intent"] = null,
            ["shipping_address_collection"] = null,
            ["shipping_cost"] = null,
            ["shipping_options"] = new JsonArray(),
            ["status"] = s.Status,
            ["submit_type"] = null,
            ["subscription"] = s.SubscriptionId,
            ["success_url"] = s.SuccessUrl,
            ["total_details"] = new JsonObject { ["amount_discount"] = 0, ["amount_shipping"] = 0, ["amount_tax"] = 0 },
            ["ui_mode"] = "hosted",
            ["url"] = s.Status == "open" ? s.Url : null,
        };
        return obj;
    }

    public JsonObject PortalSession(PortalSession p) => new()
    {
        ["id"] = p.Id,
        ["object"] = "billing_portal.session",
        ["configuration"] = "bpc_simulator_default",
        ["created"] = p.Created,
        ["customer"] = p.CustomerId,
        ["flow"] = null,
        ["livemode"] = false,
        ["locale"] = null,
        ["on_behalf_of"] = null,
        ["return_url"] = p.ReturnUrl,
        ["url"] = p.Url,
    };

    public JsonObject SubscriptionItem(Subscription s, SubscriptionItem i)
    {
        var price = state.Prices[i.PriceId];
        var item = new JsonObject
        {
            ["id"] = i.Id,
            ["object"] = "subscription_item",
            ["billing_thresholds"] = null,
            ["created"] = i.Created,
            ["current_period_end"] = i.PeriodEnd,
            ["current_period_start"] = i.PeriodStart,
            ["discounts"] = new JsonArray(),
            ["metadata"] = Map(i.Metadata),
            ["plan"] = Plan(price),
            ["price"] = Price(price),
            ["quantity"] = i.Quantity,
            ["subscription"] = s.Id,
            ["tax_rates"] = new JsonArray(),
        };
        if (i.Metered)
        {
            item.Remove("quantity"); // Stripe leaves it out for a metered item
        }
        return item;
    }

    public JsonObject Subscription(Subscription s) => new()
    {
        ["id"] = s.Id,
        ["object"] = "subscription",
        ["application"] = null,
        ["application_fee_percent"] = null,
        ["automatic_tax"] = new JsonObject { ["disabled_reason"] = null, ["enabled"] = false, ["liability"] = null },
        ["billing_cycle_anchor"] = s.BillingCycleAnchor,
        ["billing_cycle_anchor_config"] = null,
        ["billing_mode"] = new JsonObject { ["type"] = "flexible", ["flexible"] = new JsonObject { ["proration_discounts"] = "included" }, ["updated_at"] = s.Created },
        ["billing_thresholds"] = null,
        ["cancel_at"] = s.CancelAt,
        ["cancel_at_period_end"] = s.CancelAtPeriodEnd,
        ["canceled_at"] = s.CanceledAt,
        ["cancellation_details"] = new JsonObject { ["comment"] = null, ["feedback"] = null, ["reason"] = s.CancellationReason },
        ["collection_method"] = "charge_automatically",
        ["created"] = s.Created,
        ["currency"] = s.Currency,
        ["customer"] = s.CustomerId,
        ["days_until_due"] = null,
        ["default_payment_method"] = state.Customers.TryGetValue(s.CustomerId, out var c) ? c.PaymentMethodId : null,
        ["default_source"] = null,
        ["default_tax_rates"] = new JsonArray(),
        ["description"] = null,
        ["discounts"] = new JsonArray(),
        ["ended_at"] = s.EndedAt,
        ["invoice_settings"] = new JsonObject { ["account_tax_ids"] = null, ["issuer"] = new JsonObject { ["type"] = "self" } },
        ["items"] = List($"/v1/subscription_items?subscription={s.Id}", s.Items.Select(i => (JsonNode)SubscriptionItem(s, i))),
        ["latest_invoice"] = s.LatestInvoiceId,
        ["livemode"] = false,
        ["metadata"] = Map(s.Metadata),
        ["next_pending_invoice_item_invoice"] = null,
        ["on_behalf_of"] = null,
        ["pause_collection"] = null,
        ["payment_settings"] = new JsonObject { ["payment_method_options"] = null, ["payment_method_types"] = null, ["save_default_payment_method"] = "off" },
        ["pending_invoice_item_interval"] = null,
        ["pending_setup_intent"] = null,
        ["pending_update"] = null,
        ["schedule"] = s.ScheduleId,
        ["start_date"] = s.StartDate,
        ["status"] = s.Status,
        ["test_clock"] = null,
        ["transfer_data"] = null,
        ["trial_end"] = s.TrialEnd,
        ["trial_settings"] = new JsonObject { ["end_behavior"] = new JsonObject { ["missing_payment_method"] = s.MissingPaymentMethod } },
        ["trial_start"] = s.TrialStart,
    };

    public JsonObject SubscriptionSchedule(SubscriptionSchedule s)
    {
        var subId = s.SubscriptionId ?? s.ReleasedSubscriptionId;
        var currency = subId is not null && state.Subscriptions.TryGetValue(subId, out var sub)
            ? sub.Currency
            : state.Prices.GetValueOrDefault(s.Phases[0].Items[0].PriceId)?.Currency;
        return new JsonObject
        {
            ["id"] = s.Id,
            ["object"] = "subscription_schedule",
            ["application"] = null,
            ["billing_mode"] = new JsonObject { ["type"] = "flexible", ["flexible"] = new JsonObject { ["proration_discounts"] = "included" }, ["updated_at"] = s.Created },
            ["canceled_at"] = s.CanceledAt,
            ["completed_at"] = s.CompletedAt,
            ["created"] = s.Created,
            ["current_phase"] = s.Status == "active"
                ? new JsonObject { ["end_date"] = s.CurrentPhase.EndDate, ["start_date"] = s.CurrentPhase.StartDate }
                : null,
            ["customer"] = s.CustomerId,
            ["customer_account"] = null,
            ["default_settings"] = new JsonObject
            {
                ["application_fee_percent"] = null,
                ["automatic_tax"] = new JsonObject { ["disabled_reason"] = null, ["enabled"] = false, ["liability"] = null },
                ["billing_cycle_anchor"] = "automatic",
                ["billing_thresholds"] = null,
                ["collection_method"] = "charge_automatically",
                ["default_payment_method"] = null,
                ["description"] = null,
                ["invoice_settings"] = new JsonObject
                {
                    ["account_tax_ids"] = null,
                    ["custom_fields"] = null,
                    ["days_until_due"] = null,
                    ["description"] = null,
                    ["footer"] = null,
                    ["issuer"] = new JsonObject { ["type"] = "self" },
                },
                ["on_behalf_of"] = null,
                ["transfer_data"] = null,
            },
            ["end_behavior"] = s.EndBehavior,
            ["livemode"] = false,
            ["metadata"] = Map(s.Metadata),
            ["phases"] = new JsonArray(s.Phases.Select(p => (JsonNode)SchedulePhase(p, currency)).ToArray()),
            ["released_at"] = s.ReleasedAt,
            ["released_subscription"] = s.ReleasedSubscriptionId,
            ["status"] = s.Status,
            ["subscription"] = s.SubscriptionId,
            ["test_clock"] = null,
        };
    }

    private JsonObject SchedulePhase(SchedulePhase p, string? currency) => new()
    {
        ["add_invoice_items"] = new JsonArray(),
        ["application_fee_percent"] = null,
        ["automatic_tax"] = new JsonObject { ["disabled_reason"] = null, ["enabled"] = false, ["liability"] = null },
        ["billing_cycle_anchor"] = p.BillingCycleAnchor,
        ["billing_thresholds"] = null,
        ["collection_method"] = null,
        ["currency"] = currency,
        ["default_payment_method"] = null,
        ["default_tax_rates"] = new JsonArray(),
        ["description"] = null,
        ["discounts"] = new JsonArray(),
        ["end_date"] = p.EndDate,
        ["invoice_settings"] = null,
        ["items"] = new JsonArray(p.Items.Select(i => (JsonNode)SchedulePhaseItem(i)).ToArray()),
        ["metadata"] = Map(p.Metadata),
        ["on_behalf_of"] = null,
        ["proration_behavior"] = p.ProrationBehavior,
        ["start_date"] = p.StartDate,
        ["transfer_data"] = null,
        ["trial_end"] = p.TrialEnd,
    };

    private JsonObject SchedulePhaseItem(SchedulePhaseItem i)
    {
        var item = new JsonObject
        {
            ["billing_thresholds"] = null,
            ["discounts"] = new JsonArray(),
            ["metadata"] = Map(i.Metadata),
            ["plan"] = i.PriceId,
            ["price"] = i.PriceId,
            ["quantity"] = i.Quantity,
            ["tax_rates"] = new JsonArray(),
        };
        if (state.Prices.TryGetValue(i.PriceId, out var price) && price.IsMetered)
        {
            item.Remove("quantity");
        }
        return item;
    }

    public JsonObject InvoiceLine(Invoice inv, InvoiceLine l)
    {
        var quantity = l.QuantityDecimal ?? l.Quantity;
        var subscriptionParent = inv.SubscriptionId is not null && l.SubscriptionItemId is not null;
        return new JsonObject
        {
            ["id"] = l.Id,
            ["object"] = "line_item",
            ["amount"] = l.Amount,
            ["currency"] = inv.Currency,
            ["description"] = l.Description,
            ["discount_amounts"] = new JsonArray(),
            ["discountable"] = !l.Proration,
            ["discounts"] = new JsonArray(),
            ["invoice"] = inv.Id,
            ["livemode"] = false,
            ["metadata"] = new JsonObject(),
            ["parent"] = subscriptionParent
                ? new JsonObject
                {
                    ["type"] = "subscription_item_details",
                    ["invoice_item_details"] = null,
                    ["subscription_item_details"] = new JsonObject
                    {
                        ["invoice_item"] = l.Proration ? "ii_" + l.Id[3..] : null,
                        ["proration"] = l.Proration,
                        ["proration_details"] = new JsonObject { ["credited_items"] = null },
                        ["subscription"] = inv.SubscriptionId,
                        ["subscription_item"] = l.SubscriptionItemId,
                    },
                }
                : null,
            ["period"] = new JsonObject { ["end"] = l.PeriodEnd, ["start"] = l.PeriodStart },
            ["pretax_credit_amounts"] = new JsonArray(),
            ["pricing"] = l.PriceId is null
                ? null
                : new JsonObject
                {
                    ["type"] = "price_details",
                    ["price_details"] = new JsonObject { ["price"] = l.PriceId, ["product"] = state.Prices.TryGetValue(l.PriceId, out var p) ? p.ProductId : null },
                    ["unit_amount_decimal"] = l.UnitAmountDecimal is { } unit
                        ? DecimalString(unit)
                        : (l.Quantity == 0 ? l.Amount : l.Amount / l.Quantity).ToString(System.Globalization.CultureInfo.InvariantCulture),
                },
            ["quantity"] = WholeOrNull(quantity),
            ["quantity_decimal"] = DecimalString(quantity),
            ["subtotal"] = l.Amount,
            ["taxes"] = new JsonArray(),
        };
    }

    public JsonObject Invoice(Invoice i)
    {
        var hosted = i.IsPreview || i.Status == "draft" ? null : $"{PublicUrl}/invoices/{i.Id}";
        var customer = state.Customers.GetValueOrDefault(i.CustomerId);
        return new JsonObject
        {
            ["id"] = i.Id,
            ["object"] = "invoice",
            ["account_country"] = "US",
            ["account_name"] = "Billing Simulator",
            ["account_tax_ids"] = null,
            ["amount_due"] = i.AmountDue,
            ["amount_overpaid"] = 0,
            ["amount_paid"] = i.AmountPaid,
            ["amount_remaining"] = i.Status is "paid" or "void" ? 0 : i.AmountDue - i.AmountPaid,
            ["amount_shipping"] = 0,
            ["application"] = null,
            ["attempt_count"] = i.AttemptCount,
            ["attempted"] = i.Attempted,
            ["auto_advance"] = i.Status is "draft" or "open",
            ["automatic_tax"] = new JsonObject { ["disabled_reason"] = null, ["enabled"] = false, ["liability"] = null, ["provider"] = null, ["status"] = null },
            ["automatically_finalizes_at"] = null,
            ["billing_reason"] = i.BillingReason,
            ["collection_method"] = "charge_automatically",
            ["created"] = i.Created,
            ["currency"] = i.Currency,
            ["custom_fields"] = null,
            ["customer"] = i.CustomerId,
            ["customer_address"] = null,
            ["customer_email"] = customer?.Email,
            ["customer_name"] = customer?.Name,
            ["customer_phone"] = null,
            ["customer_shipping"] = null,
            ["customer_tax_exempt"] = "none",
            ["customer_tax_ids"] = new JsonArray(),
            ["default_payment_method"] = null,
            ["default_source"] = null,
            ["default_tax_rates"] = new JsonArray(),
            ["description"] = null,
            ["discounts"] = new JsonArray(),
            ["due_date"] = null,
            ["effective_at"] = i.FinalizedAt,
            ["ending_balance"] = i.FinalizedAt is null ? null : 0,
            ["footer"] = null,
            ["from_invoice"] = null,
            ["hosted_invoice_url"] = hosted,
            ["invoice_pdf"] = hosted is null ? null : hosted + "/pdf",
            ["issuer"] = new JsonObject { ["type"] = "self" },
            ["last_finalization_error"] = null,
            ["latest_revision"] = null,
            ["lines"] = List($"/v1/invoices/{i.Id}/lines", i.Lines.Select(l => (JsonNode)InvoiceLine(i, l))),
            ["livemode"] = false,
            ["metadata"] = new JsonObject(),
            ["next_payment_attempt"] = i.NextPaymentAttempt,
            ["number"] = i.Number,
            ["on_behalf_of"] = null,
            ["parent"] = i.SubscriptionId is null
                ? null
                : new JsonObject
                {
                    ["type"] = "subscription_details",
                    ["quote_details"] = null,
                    ["subscription_details"] = new JsonObject
                    {
                        ["metadata"] = Map(i.SubscriptionMetadata),
                        ["subscription"] = i.SubscriptionId,
                    },
                },
            ["payment_settings"] = new JsonObject { ["default_mandate"] = null, ["payment_method_options"] = null, ["payment_method_types"] = null },
            ["period_end"] = i.PeriodEnd,
            ["period_start"] = i.PeriodStart,
            ["post_payment_credit_notes_amount"] = 0,
            ["pre_payment_credit_notes_amount"] = 0,
            ["receipt_number"] = null,
            ["rendering"] = null,
            ["shipping_cost"] = null,
            ["shipping_details"] = null,
            ["starting_balance"] = 0,
            ["statement_descriptor"] = null,
            ["status"] = i.Status,
            ["status_transitions"] = new JsonObject
            {
                ["finalized_at"] = i.FinalizedAt,
                ["marked_uncollectible_at"] = i.MarkedUncollectibleAt,
                ["paid_at"] = i.PaidAt,
                ["voided_at"] = i.VoidedAt,
            },
            ["subtotal"] = i.Total,
            ["subtotal_excluding_tax"] = i.Total,
            ["test_clock"] = null,
            ["total"] = i.Total,
            ["total_discount_amounts"] = new JsonArray(),
            ["total_excluding_tax"] = i.Total,
            ["total_pretax_credit_amounts"] = new JsonArray(),
            ["total_taxes"] = new JsonArray(),
            ["webhooks_delivered_at"] = i.FinalizedAt,
        };
    }

    public JsonObject InvoicePayment(InvoicePayment p) => new()
    {
        ["id"] = p.Id,
        ["object"] = "invoice_payment",
        ["amount_paid"] = p.AmountPaid,
        ["amount_requested"] = p.AmountRequested,
        ["created"] = p.Created,
        ["currency"] = p.Currency,
        ["invoice"] = p.InvoiceId,
        ["is_default"] = true,
        ["livemode"] = false,
        ["payment"] = new JsonObject { ["type"] = "payment_intent", ["payment_intent"] = p.PaymentIntentId },
        ["status"] = p.Status,
        ["status_transitions"] = new JsonObject { ["canceled_at"] = null, ["paid_at"] = p.PaidAt },
    };

    public JsonObject PaymentIntent(PaymentIntent p) => new()
    {
        ["id"] = p.Id,
        ["object"] = "payment_intent",
        ["amount"] = p.Amount,
        ["amount_capturable"] = 0,
        ["amount_details"] = new JsonObject { ["tip"] = new JsonObject() },
        ["amount_received"] = p.AmountReceived,
        ["application"] = null,
        ["application_fee_amount"] = null,
        ["automatic_payment_methods"] = null,
        ["canceled_at"] = null,
        ["cancellation_reason"] = null,
        ["capture_method"] = "automatic",
        ["client_secret"] = p.Id + "_secret_sim",
        ["confirmation_method"] = "automatic",
        ["created"] = p.Created,
        ["currency"] = p.Currency,
        ["customer"] = p.CustomerId,
        ["description"] = p.Description,
        ["excluded_payment_method_types"] = null,
        ["last_payment_error"] = p.LastErrorCode is null
            ? null
            : new JsonObject
            {
                ["type"] = "card_error",
                ["code"] = p.LastErrorCode,
                ["decline_code"] = p.LastErrorDeclineCode,
                ["message"] = p.LastErrorMessage,
            },
        ["latest_charge"] = p.LatestChargeId,
        ["livemode"] = false,
        ["metadata"] = Map(p.Metadata),
        ["next_action"] = null,
        ["on_behalf_of"] = null,
        ["payment_method"] = p.PaymentMethodId,
        ["payment_method_configuration_details"] = null,
        ["payment_method_options"] = new JsonObject(),
        ["payment_method_types"] = new JsonArray(p.PaymentMethodType),
        ["processing"] = null,
        ["receipt_email"] = null,
        ["review"] = null,
        ["setup_future_usage"] = null,
        ["shipping"] = null,
        ["source"] = null,
        ["statement_descriptor"] = null,
        ["statement_descriptor_suffix"] = null,
        ["status"] = p.Status,
        ["transfer_data"] = null,
        ["transfer_group"] = null,
    };

    public JsonObject Charge(Charge c)
    {
        var refunds = state.Refunds.Values.Where(r => r.ChargeId == c.Id).OrderByDescending(r => state.Order(r.Id)).Select(r => (JsonNode)Refund(r));
        return new JsonObject
        {
            ["id"] = c.Id,
            ["object"] = "charge",
            ["amount"] = c.Amount,
            ["amount_captured"] = c.Paid ? c.Amount : 0,
            ["amount_refunded"] = c.AmountRefunded,
            ["application"] = null,
            ["application_fee"] = null,
            ["application_fee_amount"] = null,
            ["balance_transaction"] = c.Paid ? "txn_" + c.Id[3..] : null,
            ["billing_details"] = new JsonObject { ["address"] = null, ["email"] = null, ["name"] = null, ["phone"] = null, ["tax_id"] = null },
            ["calculated_statement_descriptor"] = "BILLING SIM",
            ["captured"] = c.Paid,
            ["created"] = c.Created,
            ["currency"] = c.Currency,
            ["customer"] = c.CustomerId,
            ["description"] = c.Description,
            ["disputed"] = c.Disputed,
            ["failure_balance_transaction"] = null,
            ["failure_code"] = c.FailureCode,
            ["failure_message"] = c.FailureMessage,
            ["fraud_details"] = new JsonObject(),
            ["livemode"] = false,
            ["metadata"] = Map(c.Metadata),
            ["on_behalf_of"] = null,
            ["outcome"] = new JsonObject
            {
                ["advice_code"] = null,
                ["network_advice_code"] = null,
                ["network_decline_code"] = null,
                ["network_status"] = c.Paid ? "approved_by_network" : "declined_by_network",
                ["reason"] = c.DeclineCode,
                ["risk_level"] = "normal",
                ["seller_message"] = c.Paid ? "Payment complete." : "The bank did not return any further details with this decline.",
                ["type"] = c.Paid ? "authorized" : "issuer_declined",
            },
            ["paid"] = c.Paid,
            ["payment_intent"] = c.PaymentIntentId,
            ["payment_method"] = c.PaymentMethodId,
            ["payment_method_details"] = c.PaymentMethodType == "card"
                ? new JsonObject
                {
                    ["type"] = "card",
                    ["card"] = new JsonObject
                    {
                        ["brand"] = "visa",
                        ["country"] = "US",
                        ["exp_month"] = 12,
                        ["exp_year"] = 2034,
                        ["funding"] = "credit",
                        ["last4"] = c.Last4,
                        ["network"] = "visa",
                    },
                }
                : new JsonObject { ["type"] = c.PaymentMethodType, [c.PaymentMethodType] = new JsonObject() },
            ["receipt_email"] = null,
            ["receipt_number"] = null,
            ["receipt_url"] = c.Paid ? $"{PublicUrl}/receipts/{c.Id}" : null,
            ["refunded"] = c.Paid && c.AmountRefunded >= c.Amount,
            ["refunds"] = List($"/v1/charges/{c.Id}/refunds", refunds),
            ["review"] = null,
            ["shipping"] = null,
            ["source"] = null,
            ["source_transfer"] = null,
            ["statement_descriptor"] = null,
            ["statement_descriptor_suffix"] = null,
            ["status"] = c.Status,
            ["transfer_data"] = null,
            ["transfer_group"] = null,
        };
    }

    public JsonObject Refund(Refund r) => new()
    {
        ["id"] = r.Id,
        ["object"] = "refund",
        ["amount"] = r.Amount,
        ["balance_transaction"] = "txn_" + r.Id[3..],
        ["charge"] = r.ChargeId,
        ["created"] = r.Created,
        ["currency"] = r.Currency,
        ["failure_reason"] = r.FailureReason,
        ["destination_details"] = new JsonObject { ["type"] = "card", ["card"] = new JsonObject { ["reference_status"] = "pending", ["reference_type"] = "acquirer_reference_number", ["type"] = "refund" } },
        ["metadata"] = Map(r.Metadata),
        ["payment_intent"] = r.PaymentIntentId,
        ["reason"] = r.Reason,
        ["receipt_number"] = null,
        ["source_transfer_reversal"] = null,
        ["status"] = r.Status,
        ["transfer_reversal"] = null,
    };

    public JsonObject Dispute(Dispute d)
    {
        var card = state.Charges.TryGetValue(d.ChargeId, out var charge) && charge.PaymentMethodType == "card";
        return new JsonObject
        {
            ["id"] = d.Id,
            ["object"] = "dispute",
            ["amount"] = d.Amount,
            ["balance_transactions"] = new JsonArray(),
            ["charge"] = d.ChargeId,
            ["created"] = d.Created,
            ["currency"] = d.Currency,
            ["enhanced_eligibility_types"] = new JsonArray(),
            ["evidence"] = new JsonObject(),
            ["evidence_details"] = new JsonObject
            {
                ["due_by"] = d.DueBy,
                ["enhanced_eligibility"] = new JsonObject(),
                ["has_evidence"] = false,
                ["past_due"] = false,
                ["submission_count"] = 0,
            },
            ["is_charge_refundable"] = false,
            ["livemode"] = false,
            ["metadata"] = Map(d.Metadata),
            ["network_reason_code"] = null,
            ["payment_intent"] = d.PaymentIntentId,
            ["payment_method_details"] = card
                ? new JsonObject { ["type"] = "card", ["card"] = new JsonObject { ["brand"] = "visa", ["case_type"] = "chargeback", ["network"] = "visa", ["network_reason_code"] = null } }
                : null,
            ["reason"] = d.Reason,
            ["status"] = d.Status,
        };
    }

    public JsonObject MeterEvent(MeterEvent m)
    {
        var payload = Map(m.Payload);
        return new JsonObject
        {
            ["object"] = "billing.meter_event",
            ["created"] = m.Created,
            ["event_name"] = m.EventName,
            ["identifier"] = m.Identifier,
            ["livemode"] = false,
            ["payload"] = payload,
            ["timestamp"] = m.Timestamp,
        };
    }

    public JsonObject Event(SimEvent e)
    {
        var data = new JsonObject { ["object"] = e.Object.DeepClone() };
        if (e.PreviousAttributes is not null)
        {
            data["previous_attributes"] = e.PreviousAttributes.DeepClone();
        }
        return new JsonObject
        {
            ["id"] = e.Id,
            ["object"] = "event",
            ["api_version"] = ApiVersion,
            ["created"] = e.Created,
            ["data"] = data,
            ["livemode"] = false,
            ["pending_webhooks"] = e.Delivered || e.Dropped ? 0 : 1,
            ["request"] = new JsonObject { ["id"] = null, ["idempotency_key"] = e.RequestIdempotencyKey },
            ["type"] = e.Type,
        };
    }

    /// <summary>Renders whatever object an id names, for <c>expand[]</c>.</summary>
    public JsonObject? ById(string id)
    {
        if (state.Customers.TryGetValue(id, out var c)) return Customer(c);
        if (state.Products.TryGetValue(id, out var p)) return Product(p);
        if (state.Prices.TryGetValue(id, out var pr)) return Price(pr);
        if (state.CheckoutSessions.TryGetValue(id, out var cs)) return CheckoutSession(cs);
        if (state.Subscriptions.TryGetValue(id, out var s)) return Subscription(s);
        if (state.SubscriptionSchedules.TryGetValue(id, out var ss)) return SubscriptionSchedule(ss);
        if (state.Invoices.TryGetValue(id, out var i)) return Invoice(i);
        if (state.PaymentIntents.TryGetValue(id, out var pi)) return PaymentIntent(pi);
        if (state.Charges.TryGetValue(id, out var ch)) return Charge(ch);
        if (state.Refunds.TryGetValue(id, out var r)) return Refund(r);
        if (state.Disputes.TryGetValue(id, out var d)) return Dispute(d);
        if (state.Meters.TryGetValue(id, out var m)) return Meter(m);
        if (state.InvoicePayments.TryGetValue(id, out var ip)) return InvoicePayment(ip);
        return null;
    }

    /// <summary>Applies Stripe's <c>expand[]</c> paths (dotted, <c>data.</c> inside lists) to a rendered object.</summary>
    public JsonObject Expand(JsonObject obj, IEnumerable<string> paths)
    {
        foreach (var path in paths)
        {
            ExpandPath(obj, path.Split('.'), 0);
        }
        return obj;
    }

    private void ExpandPath(JsonNode? node, string[] segments, int index)
    {
        if (node is JsonArray array)
        {
            // A plain array (a schedule's phases, a phase's items): the path applies to each element.
            foreach (var element in array)
            {
                ExpandPath(element, segments, index);
            }
            return;
        }
        if (node is not JsonObject obj || index >= segments.Length)
        {
            return;
        }
        var segment = segments[index];
        if (obj["object"]?.GetValue<string>() == "list" && segment == "data" && obj["data"] is JsonArray items)
        {
            foreach (var item in items)
            {
                ExpandPath(item, segments, index + 1);
            }
            return;
        }
        if (index == segments.Length - 1)
        {
            ExpandLeaf(obj, segment);
            return;
        }
        if (obj[segment] is JsonValue value && value.TryGetValue<string>(out var refId))
        {
            obj[segment] = ById(refId);
        }
        ExpandPath(obj[segment], segments, index + 1);
    }

    private void ExpandLeaf(JsonObject obj, string field)
    {
        var type = obj["object"]?.GetValue<string>();
        var id = obj["id"]?.GetValue<string>();
        if (type == "invoice" && field == "payments" && id is not null)
        {
            var payments = state.InvoicePayments.Values.Where(p => p.InvoiceId == id).OrderByDescending(p => state.Order(p.Id)).Select(p => (JsonNode)InvoicePayment(p));
            obj["payments"] = List($"/v1/invoices/{id}/payments", payments);
            return;
        }
        if (type == "checkout.session" && field == "line_items" && id is not null && state.CheckoutSessions.TryGetValue(id, out var session))
        {
            obj["line_items"] = List($"/v1/checkout/sessions/{id}/line_items", session.LineItems.Select(li => (JsonNode)CheckoutLineItem(session, li)));
            return;
        }
        if (field == "plan" && obj[field] is JsonValue planValue && planValue.TryGetValue<string>(out var planId) && state.Prices.TryGetValue(planId, out var plan))
        {
            obj["plan"] = Plan(plan);
            return;
        }
        if (obj[field] is JsonValue value && value.TryGetValue<string>(out var refId))
        {
            obj[field] = ById(refId) ?? throw StripeError.Invalid("expand", $"This property cannot be expanded ({field}).");
        }
        else if (!obj.ContainsKey(field))
        {
            throw StripeError.Invalid("expand", $"This property cannot be expanded ({field}). You may want to try expanding 'data.{field}' instead.");
        }
    }
}
