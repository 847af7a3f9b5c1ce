# syntax=docker/dockerfile:1
# Billing usage. Build from the repository root:
#   docker build -f deploy/docker/usage.Dockerfile -t billing/usage:TAG .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig ./
COPY contracts/ contracts/
COPY services/Billing.Catalog/ services/Billing.Catalog/
COPY services/Billing.ServiceDefaults/ services/Billing.ServiceDefaults/
COPY services/Usage/ services/Usage/
RUN dotnet publish services/Usage/Billing.Usage.Api/Billing.Usage.Api.csproj -c Release -o /app -p:UseAppHost=false

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app ./
COPY deploy/catalogs/ /etc/billing/catalogs/
ENV ASPNETCORE_URLS=http://+:8080 \
    ASPNETCORE_ENVIRONMENT=Production \
    BILLING_CATALOG=/etc/billing/catalogs/default.json \
    BILLING_LOG_FORMAT=json \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
EXPOSE 8080
# The image's non-root user (uid 1654).
USER $APP_UID
ENTRYPOINT ["dotnet", "Billing.Usage.Api.dll"]
