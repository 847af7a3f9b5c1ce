#!/usr/bin/env bash
# rabbitctl.sh <profile> <rabbitmqctl args…>: rabbitmqctl against a profile's private node (fault tests use
# 'test stop_app' / 'test start_app' to take the broker away and bring it back).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$REPO/deploy/lib/infra.sh"
infra_profile "$1"
shift
infra_rabbit_ctl "$@"
