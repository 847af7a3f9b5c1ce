using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Billing.Contracts;
using MassTransit.Serialization;

namespace Billing.Platform.Tests;

/// <summary>
/// Every integration event serialises as its checked-in snapshot says, with additive changes only: a member may be
/// added, never removed, renamed or changed in kind, and an old message must still deserialise. Set
/// <c>UPDATE_SNAPSHOTS=1</c> to write the snapshot of a new event.
/// </summary>
[TestFixture]
public class Integration_event_contracts
{
    private static readonly DateTimeOffset When = new(2026, 11, 25, 10, 0, 0, TimeSpan.Zero);
    private static readonly JsonSerializerOptions Wire = SystemTextJsonMessageSerializer.Options;

    public static IEnumerable<Type> Events() =>
        typeof(InvoicePaid).Assembly.GetExportedTypes().Where(t => t is { IsClass: true, IsAbstract: false } && t.Namespace == "Billing.Contracts")
            .OrderBy(t => t.Name);

    private static string SnapshotPath(Type type, bool source) => source
        ? Path.Combine(TestEnvironment.Repo, "tests", "Billing.Platform.Tests", "Snapshots", type.Name + ".json")
        : Path.Combine(AppContext.BaseDirectory, "Snapshots", type.Name + ".json");

    [TestCaseSource(nameof(Events))]
    public void Serialises_compatibly_with_its_snapshot(Type type)
    {
        var current = JsonNode.Parse(JsonSerializer.Serialize(Sample(type), type, Wire))!.AsObject();
        var path = SnapshotPath(type, source: false);
        if (!File.Exists(path))
        {
            if (Environment.GetEnvironmentVariable("UPDATE_SNAPSHOTS") == "1")
            {
                File.WriteAllText(SnapshotPath(type, source: true), current.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                Assert.Inconclusive($"Wrote the snapshot of {type.Name}; commit it.");
            }
            Assert.Fail($"{type.Name} has no snapshot in tests/Billing.Platform.Tests/Snapshots (run with UPDATE_SNAPSHOTS=1).");
        }

        var snapshot = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        foreach (var (name, value) in snapshot)
        {
            Assert.That(current.ContainsKey(name), Is.True, $"{type.Name}.{name} was removed or renamed: a breaking change");
            Assert.That(Kind(current[name]), Is.EqualTo(Kind(value)), $"{type.Name}.{name} changed its JSON kind");
        }
        Assert.That(JsonSerializer.Deserialize(snapshot.ToJsonString(), type, Wire), Is.Not.Null,
            $"a message written by the previous version of {type.Name} must still deserialise");
    }

    [Test]
    public void Every_snapshot_has_its_event()
    {
        var names = Events().Select(t => t.Name).ToHashSet();
        var folder = Path.Combine(AppContext.BaseDirectory, "Snapshots");
        Assert.That(Directory.Exists(folder), Is.True, "the snapshots are copied next to the tests");
        var orphans = Directory.GetFiles(folder, "*.json")
            .Select(Path.GetFileNameWithoutExtension).Where(n => !names.Contains(n!)).ToList();
        Assert.That(orphans, Is.Empty, "an event was removed or renamed: a breaking change");
    }

    [TestCaseSource(nameof(Events))]
    public void Is_an_immutable_sealed_record_with_a_past_tense_name_and_the_common_members(Type type)
    {
        Assert.Multiple(() =>
        {
            Assert.That(type.IsSealed, Is.True, "sealed");
            Assert.That(type.GetMethod("<Clone>$") is not null, Is.True, "a record");
            Assert.That(type.BaseType, Is.EqualTo(typeof(object)), "no message base class");
            Assert.That(type.GetProperties().Where(p => p.SetMethod is { } s && !s.ReturnParameter.GetRequiredCustomModifiers().Contains(typeof(System.Runtime.CompilerServices.IsExternalInit))),
                Is.Empty, "init-only properties");
            Assert.That(type.GetProperty("UserId"), Is.Not.Null, "carries UserId");
            Assert.That(type.GetProperty("OccurredAt"), Is.Not.Null, "carries OccurredAt");
            Assert.That(type.Name, Does.Match("(ed|Paid|Failed|Low|Exhausted|Back)$"), "past tense");
        });
    }

    private static string Kind(JsonNode? node) => node?.GetValueKind() switch
    {
        null or JsonValueKind.Null => "null-or-any",
        JsonValueKind.True or JsonValueKind.False => "bool",
        var k => k.ToString()!,
    };

    private static object Sample(Type type)
    {
        var instance = Activator.CreateInstance(type)!;
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
        {
            var t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            object value = t == typeof(string) ? p.Name + "-1"
                : t == typeof(int) ? 3
                : t == typeof(long) ? 500L
                : t == typeof(bool) ? true
                : t == typeof(DateTimeOffset) ? When
                : t == typeof(Guid) ? Guid.Parse("00000000-0000-0000-0000-000000000001")
                : t.Namespace == "Billing.Contracts.Values" ? Sample(t)
                : throw new NotSupportedException($"Add a sample value for {t.Name} ({type.Name}.{p.Name})");
            p.SetValue(instance, value);
        }
        return instance;
    }
}
