using Billing.Wallet.Api.Persistence;

namespace Billing.Wallet.Api.Consumers;

/// <summary>
/// Lets expired tokens leave through an <c>expiry</c> ledger entry even for wallets nobody looks at (reads and debits
/// also expire what is due first, so a balance never includes expired tokens).
/// </summary>
public sealed class ExpirySweeper(WalletStore store, IConfiguration configuration, ILogger<ExpirySweeper> logger) : BackgroundService
{
    private void Failed(string userId, Exception ex) =>
        logger.LogError(ex, "Expiring the tokens of wallet {UserId} failed; the other wallets go on, this one is tried again at the next sweep", userId);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var every = TimeSpan.FromSeconds(int.TryParse(configuration["WALLET_EXPIRY_SWEEP_SECONDS"], out var s) && s > 0 ? s : 60);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(every, stoppingToken);
                while (await store.ExpireDueAsync(100, Failed, stoppingToken) == 100)
                {
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                logger.LogWarning(ex, "Expiring tokens failed; trying again at the next sweep");
            }
        }
    }
}
