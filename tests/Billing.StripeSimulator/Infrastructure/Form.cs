using System.Globalization;
using System.Text;

namespace Billing.StripeSimulator.Infrastructure;

/// <summary>
/// Stripe's form encoding with literal brackets (<c>line_items[0][price]=…</c>, <c>expand[]=…</c>) parsed into a tree
/// of dictionaries; numeric keys and <c>[]</c> read back as arrays.
/// </summary>
public sealed class Form
{
    private readonly Dictionary<string, object> _root;
    private readonly string _prefix;

    private Form(Dictionary<string, object> root, string prefix)
    {
        _root = root;
        _prefix = prefix;
    }

    public static Form Empty { get; } = new(new Dictionary<string, object>(StringComparer.Ordinal), "");

    public static async Task<Form> ReadAsync(HttpRequest request)
    {
        var pairs = new List<KeyValuePair<string, string>>();
        AddPairs(pairs, request.QueryString.HasValue ? request.QueryString.Value!.TrimStart('?') : "");
        if (request.ContentLength is > 0 || request.Headers.TransferEncoding.Count > 0)
        {
            var contentType = request.ContentType ?? "";
            if (contentType.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase) || contentType.Length == 0)
            {
                using var reader = new StreamReader(request.Body, Encoding.UTF8);
                AddPairs(pairs, await reader.ReadToEndAsync());
            }
        }
        return Parse(pairs);
    }

    public static Form Parse(string encoded)
    {
        var pairs = new List<KeyValuePair<string, string>>();
        AddPairs(pairs, encoded);
        return Parse(pairs);
    }

    private static void AddPairs(List<KeyValuePair<string, string>> pairs, string encoded)
    {
        foreach (var part in encoded.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=');
            var key = Uri.UnescapeDataString((eq < 0 ? part : part[..eq]).Replace('+', ' '));
            var value = eq < 0 ? "" : Uri.UnescapeDataString(part[(eq + 1)..].Replace('+', ' '));
            pairs.Add(new(key, value));
        }
    }

    private static Form Parse(List<KeyValuePair<string, string>> pairs)
    {
        var root = new Dictionary<string, object>(StringComparer.Ordinal);
        foreach (var (key, value) in pairs)
        {
            var segments = SplitKey(key);
            var node = root;
            for (var i = 0; i < segments.Count; i++)
            {
                var segment = segments[i];
                if (segment.Length == 0)
                {
                    segment = node.Count.ToString(CultureInfo.InvariantCulture);
                }
                if (i == segments.Count - 1)
                {
                    node[segment] = value;
                }
                else
                {
                    if (!node.TryGetValue(segment, out var child) || child is not Dictionary<string, object> childDict)
                    {
                        childDict = new Dictionary<string, object>(StringComparer.Ordinal);
                        node[segment] = childDict;
                    }
                    node = childDict;
                }
            }
        }
        return new Form(root, "");
    }

    private static List<string> SplitKey(string key)
    {
        var segments = new List<string>();
        var open = key.IndexOf('[');
        if (open < 0)
        {
            segments.Add(key);
            return segments;
        }
        segments.Add(key[..open]);
        var rest = key[open..];
        while (rest.StartsWith('['))
        {
            var close = rest.IndexOf(']');
            if (close < 0)
            {
                break;
            }
            segments.Add(rest[1..close]);
            rest = rest[(close + 1)..];
        }
        return segments;
    }

    private object? Get(string[] path)
    {
        object? node = _root;
        foreach (var segment in path)
        {
            if (node is not Dictionary<string, object> dict || !dict.TryGetValue(segment, out node))
            {
                return null;
            }
        }
        return node;
    }

    private string ParamName(string[] path)
    {
        var sb = new StringBuilder(_prefix);
        foreach (var segment in path)
        {
            if (sb.Length == 0)
            {
                sb.Append(segment);
            }
            else
            {
                sb.Append('[').Append(segment).Append(']');
            }
        }
        return sb.ToString();
    }

    public bool Has(params string[] path) => Get(path) is not null;

    public string? Str(params string[] path) => Get(path) as string;

    public string Required(params string[] path)
    {
        var value = Str(path);
        if (string.IsNullOrEmpty(value))
        {
            throw StripeError.Missing(ParamName(path));
        }
        return value;
    }

    public long? Long(params string[] path)
    {
        var value = Str(path);
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }
        if (long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var number))
        {
            return number;
        }
        if (decimal.TryParse(value, NumberStyles.Number, CultureInfo.InvariantCulture, out var dec) && dec == Math.Floor(dec))
        {
            return (long)dec;
        }
        throw StripeError.Invalid(ParamName(path), $"Invalid integer: {value}", "parameter_invalid_integer");
    }

    public decimal? Decimal(params string[] path)
    {
        var value = Str(path);
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }
        if (decimal.TryParse(value, NumberStyles.Number, CultureInfo.InvariantCulture, out var number))
        {
            return number;
        }
        throw StripeError.Invalid(ParamName(path), $"Invalid decimal: {value}", "parameter_invalid_integer");
    }

    public bool? Bool(params string[] path)
    {
        var value = Str(path);
        return value switch
        {
            null or "" => null,
            "true" or "True" => true,
            "false" or "False" => false,
            _ => throw StripeError.Invalid(ParamName(path), $"Invalid boolean: {value}"),
        };
    }

    /// <summary>A string-to-string map such as <c>metadata</c>; an empty value means "unset this key".</summary>
    public Dictionary<string, string>? Map(params string[] path)
    {
        var node = Get(path);
        if (node is null)
        {
            return null;
        }
        if (node is string s)
        {
            if (s.Length == 0)
            {
                return new Dictionary<string, string>();
            }
            throw StripeError.Invalid(ParamName(path), "Invalid object");
        }
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in (Dictionary<string, object>)node)
        {
            result[key] = value as string ?? "";
        }
        return result;
    }

    public List<string> List(params string[] path)
    {
        var node = Get(path);
        return node switch
        {
            null => [],
            string s => s.Length == 0 ? [] : [s],
            Dictionary<string, object> dict => OrderedValues(dict).OfType<string>().ToList(),
            _ => [],
        };
    }

    public List<Form> Items(params string[] path)
    {
        if (Get(path) is not Dictionary<string, object> dict)
        {
            return [];
        }
        var prefix = ParamName(path);
        var result = new List<Form>();
        foreach (var (key, value) in OrderedPairs(dict))
        {
            if (value is Dictionary<string, object> child)
            {
                result.Add(new Form(child, $"{prefix}[{key}]"));
            }
        }
        return result;
    }

    public Form? Sub(params string[] path) =>
        Get(path) is Dictionary<string, object> dict ? new Form(dict, ParamName(path)) : null;

    private static IEnumerable<KeyValuePair<string, object>> OrderedPairs(Dictionary<string, object> dict) =>
        dict.OrderBy(p => int.TryParse(p.Key, out var i) ? i : int.MaxValue).ThenBy(p => p.Key, StringComparer.Ordinal);

    private static IEnumerable<object> OrderedValues(Dictionary<string, object> dict) => OrderedPairs(dict).Select(p => p.Value);
}
