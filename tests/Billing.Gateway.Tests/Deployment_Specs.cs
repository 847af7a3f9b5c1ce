using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Billing.Gateway.Tests;

/// <summary>
/// There is no cluster and no Docker engine here: the deployment files are parsed and checked for what a cluster or
/// a compose run needs (images, ports, probes, env from ConfigMaps and Secrets that exist, labels matching selectors).
/// </summary>
[TestFixture]
public class The_deployment_files
{
    private static readonly string[] Services = ["subscriptions", "payments", "usage", "wallet"];
    private static readonly string[] Apps = [.. Services, "gateway"];
    private static string Repo => TestEnvironment.Repo;

    private static List<YamlMappingNode> K8s() =>
        Directory.GetFiles(Path.Combine(Repo, "deploy", "k8s"), "*.yaml").OrderBy(f => f).SelectMany(file =>
        {
            var stream = new YamlStream();
            using var reader = new StreamReader(file);
            stream.Load(reader);
            return stream.Documents.Select(d => d.RootNode).OfType<YamlMappingNode>();
        }).ToList();

    private static YamlMappingNode LoadYaml(string path)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(path);
        stream.Load(reader);
        return (YamlMappingNode)stream.Documents.Single().RootNode;
    }

    private static string? S(YamlNode node, params string[] path)
    {
        YamlNode? current = node;
        foreach (var key in path)
        {
            current = current is YamlMappingNode m && m.Children.TryGetValue(new YamlScalarNode(key), out var next) ? next : null;
        }
        return (current as YamlScalarNode)?.Value;
    }

    private static YamlNode? N(YamlNode node, params string[] path)
    {
        YamlNode? current = node;
        foreach (var key in path)
        {
            current = current is YamlMappingNode m && m.Children.TryGetValue(new YamlScalarNode(key), out var next) ? next : null;
        }
        return current;
    }

    private static Dictionary<string, string> Map(YamlNode? node) =>
        node is YamlMappingNode m ? m.Children.ToDictionary(c => ((YamlScalarNode)c.Key).Value!, c => (c.Value as YamlScalarNode)?.Value ?? "") : [];

    private static IEnumerable<YamlMappingNode> Seq(YamlNode? node) => node is YamlSequenceNode s ? s.Children.OfType<YamlMappingNode>() : [];

    private static List<YamlMappingNode> OfKind(List<YamlMappingNode> docs, string kind) => docs.Where(d => S(d, "kind") == kind).ToList();

    [Test]
    public void Kubernetes_has_a_Deployment_Service_and_autoscaler_for_every_service_and_the_gateway()
    {
        var docs = K8s();
        Assert.That(docs.All(d => S(d, "apiVersion") is not null && S(d, "kind") is not null && S(d, "metadata", "name") is not null));
        var deployments = OfKind(docs, "Deployment").ToDictionary(d => S(d, "metadata", "name")!);
        Assert.That(deployments.Keys, Is.EquivalentTo(Apps.Select(a => "billing-" + a)));
        Assert.That(OfKind(docs, "Service").Select(d => S(d, "metadata", "name")), Is.EquivalentTo(deployments.Keys));
        var hpas = OfKind(docs, "HorizontalPodAutoscaler");
        Assert.That(hpas.Select(h => S(h, "spec", "scaleTargetRef", "name")), Is.EquivalentTo(deployments.Keys), "every stateless app scales");
        foreach (var hpa in hpas)
        {
            Assert.That(S(hpa, "spec", "scaleTargetRef", "kind"), Is.EqualTo("Deployment"));
            Assert.That(int.Parse(S(hpa, "spec", "minReplicas")!), Is.GreaterThanOrEqualTo(2).And.LessThanOrEqualTo(int.Parse(S(hpa, "spec", "maxReplicas")!)));
        }
        Assert.That(docs.Where(d => S(d, "kind") is "StatefulSet"), Is.Empty, "PostgreSQL and RabbitMQ are external dependencies");
    }

    [Test]
    public void Each_Deployment_has_an_image_a_port_probes_and_labels_that_match_its_selector_and_Service()
    {
        var docs = K8s();
        var services = OfKind(docs, "Service");
        foreach (var deployment in OfKind(docs, "Deployment"))
        {
            var name = S(deployment, "metadata", "name")!;
            var selector = Map(N(deployment, "spec", "selector", "matchLabels"));
            var labels = Map(N(deployment, "spec", "template", "metadata", "labels"));
            Assert.That(selector, Is.Not.Empty, name);
            Assert.That(selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value), name + ": selector matches the pod labels");

            var container = Seq(N(deployment, "spec", "template", "spec", "containers")).Single();
            Assert.That(S(container, "image"), Does.Match(@"^[\w.\-/]+:[\w.\-]+$").And.Not.EndsWith(":latest"), name + ": a pinned image");
            var ports = Seq(N(container, "ports")).ToDictionary(p => S(p, "name") ?? "", p => S(p, "containerPort"));
            Assert.That(ports, Does.ContainKey("http").WithValue("8080"), name);
            Assert.That((S(container, "readinessProbe", "httpGet", "path"), S(container, "readinessProbe", "httpGet", "port")), Is.EqualTo(("/health/ready", "http")), name);
            Assert.That((S(container, "livenessProbe", "httpGet", "path"), S(container, "livenessProbe", "httpGet", "port")), Is.EqualTo(("/health/live", "http")), name);

            var service = services.Single(s => S(s, "metadata", "name") == name);
            var serviceSelector = Map(N(service, "spec", "selector"));
            Assert.That(serviceSelector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value), name + ": the Service selects these pods");
            Assert.That(OfKind(docs, "Deployment").Count(d => serviceSelector.All(kv => Map(N(d, "spec", "template", "metadata", "labels")).GetValueOrDefault(kv.Key) == kv.Value)),
                Is.EqualTo(1), name + ": and no other");
            foreach (var port in Seq(N(service, "spec", "ports")))
            {
                Assert.That(ports.ContainsKey(S(port, "targetPort")!) || ports.ContainsValue(S(port, "targetPort")), name + ": targetPort exists");
            }
        }
    }

    [Test]
    public void Env_comes_from_ConfigMaps_and_Secrets_that_exist_with_those_keys()
    {
        var docs = K8s();
        var configMaps = OfKind(docs, "ConfigMap").ToDictionary(d => S(d, "metadata", "name")!, d => Map(N(d, "data")));
        var secrets = OfKind(docs, "Secret").ToDictionary(d => S(d, "metadata", "name")!, d => Map(N(d, "stringData")).Keys.Concat(Map(N(d, "data")).Keys).ToHashSet());
        foreach (var deployment in OfKind(docs, "Deployment"))
        {
            var name = S(deployment, "metadata", "name")!;
            var pod = N(deployment, "spec", "template", "spec")!;
            var container = Seq(N(pod, "containers")).Single();
            foreach (var from in Seq(N(container, "envFrom")))
            {
                if (S(from, "configMapRef", "name") is { } cm)
                {
                    Assert.That(configMaps, Does.ContainKey(cm), name);
                }
                if (S(from, "secretRef", "name") is { } sr)
                {
                    Assert.That(secrets, Does.ContainKey(sr), name);
                }
            }
            var env = new Dictionary<string, string>();
            foreach (var variable in Seq(N(container, "env")))
            {
                var key = S(variable, "name")!;
                if (S(variable, "valueFrom", "secretKeyRef", "name") is { } secret)
                {
                    Assert.That(secrets.TryGetValue(secret, out var keys) && keys.Contains(S(variable, "valueFrom", "secretKeyRef", "key")!), $"{name}: {key} from {secret}");
                    env[key] = "secret";
                }
                else if (S(variable, "valueFrom", "configMapKeyRef", "name") is { } map)
                {
                    Assert.That(configMaps.TryGetValue(map, out var data) && data.ContainsKey(S(variable, "valueFrom", "configMapKeyRef", "key")!), $"{name}: {key} from {map}");
                    env[key] = "configmap";
                }
                else
                {
                    env[key] = "literal";
                }
            }
            foreach (var volume in Seq(N(pod, "volumes")))
            {
                if (S(volume, "configMap", "name") is { } cm)
                {
                    Assert.That(configMaps, Does.ContainKey(cm), name);
                }
            }
            if (name == "billing-gateway")
            {
                continue;
            }
            foreach (var secretVar in new[] { "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "ConnectionStrings__Database", "RabbitMq__Password" })
            {
                Assert.That(env.GetValueOrDefault(secretVar), Is.EqualTo("secret"), $"{name}: {secretVar} comes from a Secret");
            }
            var mounts = Seq(N(container, "volumeMounts")).Select(m => S(m, "mountPath")).ToList();
            Assert.That(configMaps["billing-config"]["BILLING_CATALOG"], Does.StartWith(mounts.Single(m => m!.Contains("catalog"))!), name + ": the catalog file is mounted");
        }

        var lenient = new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
        var catalog = JsonDocument.Parse(configMaps["billing-catalog"]["catalog.json"], lenient).RootElement;
        var file = JsonDocument.Parse(File.ReadAllText(Path.Combine(Repo, "deploy", "catalogs", "default.json")), lenient).RootElement;
        Assert.That(JsonElement.DeepEquals(catalog, file), Is.True, "the catalog ConfigMap is deploy/catalogs/default.json");
    }

    [Test]
    public void Each_app_has_a_Dockerfile_that_publishes_its_project_and_runs_its_assembly()
    {
        foreach (var app in Apps)
        {
            var path = Path.Combine(Repo, "deploy", "docker", app + ".Dockerfile");
            Assert.That(File.Exists(path), path);
            var text = File.ReadAllText(path);
            var project = Regex.Match(text, @"dotnet publish (\S+\.csproj)").Groups[1].Value;
            Assert.That(File.Exists(Path.Combine(Repo, project)), $"{app}: {project}");
            var assembly = Path.GetFileNameWithoutExtension(project);
            Assert.That(text, Does.Contain($"ENTRYPOINT [\"dotnet\", \"{assembly}.dll\"]"));
            foreach (Match copy in Regex.Matches(text, @"^COPY (?!--from)(.+) \S+$", RegexOptions.Multiline))
            {
                foreach (var source in copy.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    Assert.That(File.Exists(Path.Combine(Repo, source)) || Directory.Exists(Path.Combine(Repo, source)), $"{app}: COPY {source}");
                }
            }
            Assert.That(text, Does.Contain("EXPOSE 8080").And.Contain("USER $APP_UID"));
        }
    }

    [Test]
    public void Compose_runs_PostgreSQL_RabbitMQ_every_service_and_the_gateway_and_production_requires_the_Stripe_keys()
    {
        var compose = LoadYaml(Path.Combine(Repo, "deploy", "docker-compose.yml"));
        var services = ((YamlMappingNode)N(compose, "services")!).Children.ToDictionary(c => ((YamlScalarNode)c.Key).Value!, c => (YamlMappingNode)c.Value);
        Assert.That(services.Keys, Is.EquivalentTo(new[] { "postgres", "rabbitmq" }.Concat(Apps)));
        foreach (var app in Apps)
        {
            var dockerfile = S(services[app], "build", "dockerfile")!;
            Assert.That(File.Exists(Path.Combine(Repo, dockerfile)), dockerfile);
        }
        foreach (var service in Services)
        {
            var env = Map(N(services[service], "environment"));
            Assert.That(env["ConnectionStrings__Database"], Does.Contain($"Database=billing_{service}").And.Contain("Host=postgres"));
            Assert.That(env["RabbitMq__Host"], Is.EqualTo("rabbitmq"));
            Assert.That(Map(N(services["gateway"], "environment"))[$"ReverseProxy__Clusters__{service}__Destinations__main__Address"], Is.EqualTo($"http://{service}:8080/"));
        }
        Assert.That(File.ReadAllText(Path.Combine(Repo, "deploy", "docker", "postgres-init.sql")), Does.Contain("billing_wallet"));

        var prod = LoadYaml(Path.Combine(Repo, "deploy", "docker-compose.prod.yml"));
        foreach (var service in Services)
        {
            var env = Map(N(prod, "services", service, "environment"));
            Assert.That(env["STRIPE_SECRET_KEY"], Does.StartWith("${STRIPE_SECRET_KEY:?"), "required, no default");
            Assert.That(env["STRIPE_WEBHOOK_SECRET"], Does.StartWith("${STRIPE_WEBHOOK_SECRET:?"));
        }
    }

    [Test]
    public void Env_example_and_PRODUCTION_md_name_every_variable_the_deployment_files_use()
    {
        var example = File.ReadAllText(Path.Combine(Repo, ".env.example"));
        var production = File.ReadAllText(Path.Combine(Repo, "docs", "PRODUCTION.md"));
        var composeText = File.ReadAllText(Path.Combine(Repo, "deploy", "docker-compose.yml")) + File.ReadAllText(Path.Combine(Repo, "deploy", "docker-compose.prod.yml"));
        var used = Regex.Matches(composeText, @"\$\{([A-Z0-9_]+)").Select(m => m.Groups[1].Value).ToHashSet();
        foreach (var variable in used)
        {
            Assert.That(example, Does.Contain(variable + "="), $".env.example: {variable}");
            Assert.That(production, Does.Contain(variable), $"PRODUCTION.md: {variable}");
        }
        foreach (var topic in new[] { "catalog push", "api_version", "invoice.paid", "charge.refunded", "quorum", "backup", "reconcil", "refund", "replay", "migrat" })
        {
            Assert.That(production, Does.Contain(topic).IgnoreCase, $"PRODUCTION.md covers {topic}");
        }
    }
}
