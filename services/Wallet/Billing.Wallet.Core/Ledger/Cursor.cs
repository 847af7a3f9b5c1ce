using System.Text;

namespace Billing.Wallet.Core.Ledger;

/// <summary>The opaque paging cursor of the transaction list: the last entry a page showed.</summary>
public static class Cursor
{
    private const string Prefix = "w1:";

    public static string Encode(long lastId) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(Prefix + lastId.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            .TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <summary>The entry id a cursor stands for; false for anything this service did not hand out.</summary>
    public static bool TryDecode(string? cursor, out long lastId)
    {
        lastId = 0;
        if (string.IsNullOrEmpty(cursor) || cursor.Length > 64)
        {
            return false;
        }
        try
        {
            var base64 = cursor.Replace('-', '+').Replace('_', '/');
            base64 = base64.PadRight(base64.Length + ((4 - (base64.Length % 4)) % 4), '=');
            var text = Encoding.UTF8.GetString(Convert.FromBase64String(base64));
            return text.StartsWith(Prefix, StringComparison.Ordinal)
                && long.TryParse(text.AsSpan(Prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out lastId)
                && lastId > 0;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
