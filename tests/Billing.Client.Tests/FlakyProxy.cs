using System.Collections.Concurrent;
using System.Net.Sockets;

namespace Billing.Client.Tests;

/// <summary>
/// A loopback proxy in front of the gateway that can lose answers: it forwards a request to Billing (so Billing acts
/// on it) and then, when told to, answers the client 503 instead — the failure a retry must survive without spending twice.
/// It records what each attempt carried (body, traceparent).
/// </summary>
public sealed class FlakyProxy : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly HttpClient _upstream = new() { BaseAddress = TestEnvironment.GatewayUrl, Timeout = TimeSpan.FromSeconds(30) };
    private readonly Task _loop;
    private int _count;

    /// <param name="loseAnswer">Given the attempt number (1-based): forward it, then answer 503 instead of Billing's answer.</param>
    public FlakyProxy(Func<int, bool> loseAnswer)
    {
        var port = FreePort();
        Url = new Uri($"http://127.0.0.1:{port}/");
        _listener.Prefixes.Add(Url.ToString());
        _listener.Start();
        _loop = Task.Run(() => LoopAsync(loseAnswer));
    }

    public Uri Url { get; }

    public ConcurrentQueue<(string Body, string? TraceParent, int Status)> Attempts { get; } = new();

    private async Task LoopAsync(Func<int, bool> loseAnswer)
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception) when (!_listener.IsListening)
            {
                return;
            }
            var attempt = Interlocked.Increment(ref _count);
            using var reader = new StreamReader(context.Request.InputStream);
            var body = await reader.ReadToEndAsync();
            using var forward = new HttpRequestMessage(new HttpMethod(context.Request.HttpMethod), context.Request.Url!.PathAndQuery);
            if (context.Request.HttpMethod != "GET")
            {
                forward.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
            }
            if (context.Request.Headers["Authorization"] is { } auth)
            {
                forward.Headers.TryAddWithoutValidation("Authorization", auth);
            }
            using var answer = await _upstream.SendAsync(forward);
            var bytes = await answer.Content.ReadAsByteArrayAsync();
            var lose = loseAnswer(attempt);
            Attempts.Enqueue((body, context.Request.Headers["traceparent"], lose ? 503 : (int)answer.StatusCode));
            context.Response.StatusCode = lose ? 503 : (int)answer.StatusCode;
            if (lose)
            {
                bytes = """{"code":"lost_in_transit"}"""u8.ToArray();
            }
            context.Response.ContentType = answer.Content.Headers.ContentType?.ToString() ?? "application/json";
            await context.Response.OutputStream.WriteAsync(bytes);
            context.Response.Close();
        }
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Close();
        try
        {
            await _loop;
        }
        catch (Exception)
        {
            // The listener's last wait ends with an exception when it is closed.
        }
        _upstream.Dispose();
    }
}
