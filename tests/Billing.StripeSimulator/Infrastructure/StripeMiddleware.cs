using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Billing.StripeSimulator.Domain;
using Billing.StripeSimulator.Engine;

namespace Billing.StripeSimulator.Infrastructure;

/// <summary>What Stripe does around every <c>/v1</c> call: the secret key check, <c>Idempotency-Key</c> replays,
/// errors in Stripe's shape, and a <c>Request-Id</c>. Remembered answers live in <see cref="SimState.Idempotency"/>, so
/// they are reset and saved with the rest of the state.</summary>
public sealed class StripeMiddleware(RequestDelegate next, Sim sim, ILogger<StripeMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext http)
    {
        var path = http.Request.Path.Value ?? "";
        if (!path.StartsWith("/v1/", StringComparison.Ordinal) && path != "/v1")
        {
            await RunWithErrors(http);
            return;
        }
        http.Response.Headers["Request-Id"] = "req_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(7));
        http.Response.Headers["Stripe-Version"] = Rendering.StripeJson.ApiVersion;

        var auth = http.Request.Headers.Authorization.ToString();
        var key = auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? auth[7..].Trim() : "";
        if (!(key.StartsWith("sk_", StringComparison.Ordinal) || key.StartsWith("rk_", StringComparison.Ordinal)))
        {
            var message = key.Length == 0
                ? "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                : $"Invalid API Key provided: {Mask(key)}";
            await WriteError(http, new StripeError(401, "invalid_request_error", null, null, message));
            return;
        }

        var idempotencyKey = http.Request.Headers["Idempotency-Key"].ToString();
        if (idempotencyKey.Length == 0 || !(HttpMethods.IsPost(http.Request.Method) || HttpMethods.IsDelete(http.Request.Method)))
        {
            await RunWithErrors(http);
            return;
        }

        http.Request.EnableBuffering();
        string body;
        using (var reader = new StreamReader(http.Request.Body, Encoding.UTF8, leaveOpen: true))
        {
            body = await reader.ReadToEndAsync();
        }
        http.Request.Body.Position = 0;
        var fingerprint = http.Request.Method + " " + path + "?" + body;
        // The API key only scopes the cache; a hash of it is enough and keeps it out of the state file.
        var storeKey = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16] + "|" + idempotencyKey;
        var cache = sim.State.Idempotency;
        var gate = cache.KeyLock(storeKey);
        await gate.WaitAsync();
        try
        {
            if (cache.Responses.TryGetValue(storeKey, out var stored))
            {
                if (stored.Fingerprint != fingerprint)
                {
                    await WriteError(http, new StripeError(400, "idempotency_error", null, null,
                        $"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{idempotencyKey}' if you meant to execute a different request."));
                    return;
                }
                http.Response.Headers["Idempotent-Replayed"] = "true";
                http.Response.StatusCode = stored.Status;
                http.Response.ContentType = "application/json";
                await http.Response.WriteAsync(stored.Body);
                return;
            }

            var original = http.Response.Body;
            using var buffer = new MemoryStream();
            http.Response.Body = buffer;
            try
            {
                await RunWithErrors(http);
            }
            finally
            {
                http.Response.Body = original;
            }
            var responseBody = Encoding.UTF8.GetString(buffer.ToArray());
            // Stripe does not store results of requests that failed validation before executing (400/401/404 are stored too
            // in reality, but 5xx are not); storing everything except 5xx is close enough.
            if (http.Response.StatusCode < 500)
            {
                cache.Responses[storeKey] = new StoredResponse(fingerprint, http.Response.StatusCode, responseBody);
                sim.State.Touch();
            }
            buffer.Position = 0;
            await buffer.CopyToAsync(original);
        }
        finally
        {
            gate.Release();
        }
    }

    private async Task RunWithErrors(HttpContext http)
    {
        try
        {
            await next(http);
        }
        catch (StripeError error)
        {
            await WriteError(http, error);
        }
        catch (Exception ex) when (!http.Response.HasStarted && (http.Request.Path.StartsWithSegments("/v1") || http.Request.Path.StartsWithSegments("/_sim")))
        {
            logger.LogError(ex, "Simulator failure on {Path}", http.Request.Path);
            await WriteError(http, new StripeError(500, "api_error", null, null, "Simulator error: " + ex.Message));
        }
    }

    private static async Task WriteError(HttpContext http, StripeError error)
    {
        http.Response.StatusCode = error.Status;
        http.Response.ContentType = "application/json";
        await http.Response.WriteAsync(error.ToJson().ToJsonString(Rendering.StripeJson.Wire));
    }

    private static string Mask(string key) => key.Length <= 8 ? "****" : key[..7] + new string('*', Math.Max(0, key.Length - 11)) + key[^4..];
}

public static class JsonNodeExtensions
{
    public static JsonObject Obj(this JsonNode? node) => node as JsonObject ?? new JsonObject();
}
