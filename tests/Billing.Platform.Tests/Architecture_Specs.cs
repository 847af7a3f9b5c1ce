using System.Reflection;

namespace Billing.Platform.Tests;

[TestFixture]
public class The_dependency_rule
{
    private static readonly string[] Contexts = ["Subscriptions", "Payments", "Usage", "Wallet"];
    private static readonly string[] Forbidden = ["Microsoft.AspNetCore", "Npgsql", "MassTransit", "Dapper", "Stripe.net", "Yarp", "Polly"];

    [TestCaseSource(nameof(Contexts))]
    public void Core_references_no_web_database_or_bus_assembly(string context)
    {
        var core = Assembly.Load($"Billing.{context}.Core");
        var offending = core.GetReferencedAssemblies()
            .Select(a => a.Name ?? "")
            .Where(name => Forbidden.Any(f => name.StartsWith(f, StringComparison.Ordinal)))
            .ToList();
        Assert.That(offending, Is.Empty, $"Billing.{context}.Core must stay free of infrastructure");
    }

    [TestCaseSource(nameof(Contexts))]
    public void Core_types_mention_no_infrastructure_type(string context)
    {
        // Catches a type used only in a signature (the reference list alone may miss a type-forwarded one).
        var core = Assembly.Load($"Billing.{context}.Core");
        var offending = new List<string>();
        foreach (var type in core.GetTypes())
        {
            var members = type.GetMembers(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly);
            var used = members.SelectMany(TypesOf).Append(type.BaseType).Concat(type.GetInterfaces());
            offending.AddRange(used.Where(t => t?.Namespace is { } ns && Forbidden.Any(f => ns.StartsWith(f.Replace(".net", ""), StringComparison.Ordinal)))
                .Select(t => $"{type.Name} uses {t!.FullName}"));
        }
        Assert.That(offending, Is.Empty);
    }

    private static IEnumerable<Type?> TypesOf(MemberInfo member) => member switch
    {
        FieldInfo f => [f.FieldType],
        PropertyInfo p => [p.PropertyType],
        MethodInfo m => m.GetParameters().Select(x => x.ParameterType).Append(m.ReturnType),
        ConstructorInfo c => c.GetParameters().Select(x => x.ParameterType),
        _ => [],
    };
}
