"""deploy/: the Dockerfile, the kustomize tree and the compose stack, checked without Docker or kustomize.

The kustomizations are built by tests/deploy_support.py (kustomize's behaviour for the fields used
here) and every object is validated against the Kubernetes schema (kubernetes-validate, strict). Then
the rules of the deployment: namespaced least-privilege RBAC, non-root pods without privilege
escalation, probes, the drain bound, credentials only through Secret references, settings that exist,
one image for dispatcher, watcher and stager. The compose file: pinned images, MinIO's real AMQP
variable names agreeing with bucketrun's AMQP defaults, the ARN `bucketrun services apply` subscribes
inputs to being the target MinIO defines, that one-shot gating the processes, mounted files that exist.
"""

from __future__ import annotations

import base64
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bucketrun.api.settings import ApiSettings
from dispatcher.fdl import load_services, load_services_text
from dispatcher.fdl.catalog import load_catalog
from dispatcher.rendering.context import STAGER_SECURITY_CONTEXT
from dispatcher.runtime.settings import (
    ENV_PREFIX,
    AmqpSettings,
    DispatchSettings,
    MetricsSettings,
    StorageSettings,
    WatcherSettings,
    env_name,
    environment_reference,
    secret_fields,
)
from tests.deploy_support import (
    CLUSTER_SCOPED,
    DEPLOY,
    KUSTOMIZE,
    REPO,
    build,
    compose_bind_mounts,
    dockerfile_instructions,
    load_documents,
)

K8S_VERSION = "1.33.0"
COMPOSE_DIR = DEPLOY / "compose"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

# Every environment variable MinIO reads for an AMQP notification target, copied from the constants
# EnvAMQP* of minio/minio, internal/event/target/amqp.go (RELEASE.2025). Note the spelling
# PUBLISHING_CONFIRMS (not PUBLISHER_): a misspelt name is silently ignored by MinIO.
MINIO_AMQP_ENV = frozenset(
    {
        "MINIO_NOTIFY_AMQP_ENABLE",
        "MINIO_NOTIFY_AMQP_URL",
        "MINIO_NOTIFY_AMQP_EXCHANGE",
        "MINIO_NOTIFY_AMQP_ROUTING_KEY",
        "MINIO_NOTIFY_AMQP_EXCHANGE_TYPE",
        "MINIO_NOTIFY_AMQP_DELIVERY_MODE",
        "MINIO_NOTIFY_AMQP_MANDATORY",
        "MINIO_NOTIFY_AMQP_IMMEDIATE",
        "MINIO_NOTIFY_AMQP_DURABLE",
        "MINIO_NOTIFY_AMQP_INTERNAL",
        "MINIO_NOTIFY_AMQP_NO_WAIT",
        "MINIO_NOTIFY_AMQP_AUTO_DELETED",
        "MINIO_NOTIFY_AMQP_EXCLUSIVE",
        "MINIO_NOTIFY_AMQP_TLS_SKIP_VERIFY",
        "MINIO_NOTIFY_AMQP_ARGUMENTS",
        "MINIO_NOTIFY_AMQP_PUBLISHING_CONFIRMS",
        "MINIO_NOTIFY_AMQP_QUEUE_DIR",
        "MINIO_NOTIFY_AMQP_QUEUE_LIMIT",
        "MINIO_NOTIFY_AMQP_QUEUE",
        "MINIO_NOTIFY_AMQP_CLIENT_TLS_CERT",
        "MINIO_NOTIFY_AMQP_CLIENT_TLS_KEY",
    }
)
API_PREFIX = ApiSettings.model_config.get("env_prefix", "")
SETTINGS_ENV = frozenset(
    [
        *(name for name, _ in environment_reference()),
        *(f"{API_PREFIX}{name.upper()}" for name in ApiSettings.model_fields),
    ]
)
SECRET_ENV = frozenset(
    [
        *(env_name(path) for path in secret_fields()),
        *(f"{API_PREFIX}{name.upper()}" for (name,) in secret_fields(ApiSettings)),
    ]
)
# A URL with a password in it, or a variable named like a credential holding a literal value.
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]+:[^/@\s]+@", re.IGNORECASE)
_CREDENTIAL_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|(^|_)URL$", re.IGNORECASE)
SECRET_NAMES = frozenset({f"{API_PREFIX}SERVICES_SECRET"})
"""Settings named like credentials whose value is the name of a Secret, not a credential."""
_PINNED_TAG = re.compile(r"^(?!latest$)[A-Za-z0-9_.-]*\d[A-Za-z0-9_.-]*$")

BUILDS = {
    "base": lambda: build(KUSTOMIZE / "base"),
    "example": lambda: build(KUSTOMIZE / "overlays" / "example"),
    # The example overlay with the optional ServiceMonitor component, composed in memory.
    "example+servicemonitor": lambda: build(
        KUSTOMIZE / "overlays" / "example",
        {
            **load_documents(KUSTOMIZE / "overlays" / "example" / "kustomization.yaml")[0],
            "components": ["../../components/servicemonitor"],
        },
    ),
}


@cache
def built(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(BUILDS[name]())


def objects(name: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in built(name) if obj["kind"] == kind]


def one(name: str, kind: str, object_name: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects(name, kind) if obj["metadata"]["name"] == object_name]
    return found


def pod_specs(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in built(name):
        if obj["kind"] in WORKLOAD_KINDS:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(spec.get("initContainers") or []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env") or []}


def all_ids() -> list[tuple[str, int]]:
    return [(name, index) for name in BUILDS for index in range(len(built(name)))]


CRD_GROUPS = ("monitoring.coreos.com/",)
"""Kinds the Kubernetes schemas do not hold (Prometheus Operator); their own tests check their shape."""


def schema_ids() -> list[tuple[str, int]]:
    return [(name, i) for name, i in all_ids() if not built(name)[i]["apiVersion"].startswith(CRD_GROUPS)]


# -- Dockerfile -----------------------------------------------------------------------------------------


def _dockerfile() -> list[Any]:
    return dockerfile_instructions(DEPLOY / "Dockerfile")


def _args() -> dict[str, str]:
    found = {}
    for instruction in _dockerfile():
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            key, _, value = instruction.arguments.partition("=")
            found[key] = value
    return found


def _final_stage() -> list[Any]:
    instructions = _dockerfile()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def test_every_base_image_is_pinned_to_an_exact_version_or_digest() -> None:
    froms = [i for i in _dockerfile() if i.keyword == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build"
    args = _args()
    for instruction in froms:
        image = instruction.arguments.split()[0]
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), image)
        if "$" in image:
            pytest.fail(f"FROM {instruction.arguments}: {image!r} uses an ARG without a default")
        if image in {i.arguments.split()[-1] for i in froms if " AS " in i.arguments.upper()}:
            continue  # a previous stage
        pinned = "@sha256:" in image or re.search(r":\d+\.\d+\.\d+[^:/]*$", image)
        assert pinned, f"FROM {image!r} is not pinned to an exact version (x.y.z) or a digest"


def test_the_final_stage_runs_as_the_stagers_numeric_non_root_user() -> None:
    users = [i.arguments for i in _final_stage() if i.keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit(), f"USER {users[-1]!r} must be numeric, so runAsNonRoot can check it"
    assert int(user) != 0, "USER 0 is root"
    # The Job template runs the stager containers (this image) as this uid: keep them the same.
    assert int(user) == STAGER_SECURITY_CONTEXT["runAsUser"]
    assert not group or int(group) == STAGER_SECURITY_CONTEXT["runAsGroup"]


def test_the_final_stage_installs_no_build_tools() -> None:
    for instruction in _final_stage():
        if instruction.keyword == "RUN":
            assert not re.search(
                r"apt-get|apk |pip install|gcc|build-essential|make ", instruction.arguments
            ), f"the runtime stage installs something: RUN {instruction.arguments}"
    copies = [i for i in _final_stage() if i.keyword == "COPY"]
    assert all(i.arguments.startswith("--from=") for i in copies), "the runtime stage copies source files"


def test_healthcheck_asks_healthz_with_python_and_entrypoint_is_the_console_script() -> None:
    final = _final_stage()
    (health,) = [i.arguments for i in final if i.keyword == "HEALTHCHECK"]
    assert "/healthz" in health
    assert "python" in health
    assert not re.search(r"\b(curl|wget)\b", health), "a slim image has neither curl nor wget"
    (entrypoint,) = [i.arguments for i in final if i.keyword == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["bucketrun"], "ENTRYPOINT must be the exec form ['bucketrun']"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "bucketrun" in scripts
    exposed = [i.arguments for i in final if i.keyword == "EXPOSE"]
    assert exposed == [str(MetricsSettings().port)]


def test_copied_paths_exist_and_the_dockerignore_lets_them_through() -> None:
    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignore[0] == "*", "the .dockerignore is an allow-list starting with '*'"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for instruction in _dockerfile():
        if instruction.keyword != "COPY" or instruction.arguments.startswith("--from="):
            continue
        *sources, _destination = instruction.arguments.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such path in the build context (repo root)"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


# -- kustomize: schema --------------------------------------------------------------------------------


@pytest.mark.parametrize(("build_name", "index"), schema_ids(), ids=str)
def test_every_object_validates_against_the_kubernetes_schema(build_name: str, index: int) -> None:
    kubernetes_validate.validate(built(build_name)[index], K8S_VERSION, strict=True)


def test_only_the_servicemonitor_is_left_to_its_own_checks() -> None:
    left = {built(name)[i]["kind"] for name, i in set(all_ids()) - set(schema_ids())}
    assert left == {"ServiceMonitor"}


def test_the_servicemonitor_selects_the_metrics_services_by_their_named_port() -> None:
    (monitor,) = objects("example+servicemonitor", "ServiceMonitor")
    services = objects("example+servicemonitor", "Service")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    labelled = [s for s in services if wanted.items() <= s["metadata"].get("labels", {}).items()]
    # The API's own Service carries the label too, but no port named as the endpoints': it is not scraped
    # (its metrics Service is).
    ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    selected = [s for s in labelled if ports & {p["name"] for p in s["spec"]["ports"]}]
    assert {s["metadata"]["name"] for s in selected} == {
        "bucketrun-dispatcher-metrics",
        "bucketrun-watcher-metrics",
        "bucketrun-api-metrics",
    }
    for endpoint in monitor["spec"]["endpoints"]:
        assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected)
        # The alert rules and the dashboard expect job="bucketrun-<component>".
        (relabel,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
        assert relabel["sourceLabels"] == ["__meta_kubernetes_service_label_app_kubernetes_io_component"]
        assert relabel["replacement"] == "bucketrun-$1"
    assert monitor["metadata"]["namespace"] == "bucketrun-example"
    assert not objects("example", "ServiceMonitor"), "the ServiceMonitor must stay optional (needs a CRD)"


# -- kustomize: RBAC and scope ------------------------------------------------------------------------


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_everything_is_namespaced_in_one_namespace_but_the_namespace_itself(build_name: str) -> None:
    (namespace,) = objects(build_name, "Namespace")
    name = namespace["metadata"]["name"]
    for obj in built(build_name):
        if obj["kind"] == "Namespace":
            continue
        assert obj["kind"] not in CLUSTER_SCOPED, f"{obj['kind']} {obj['metadata']['name']} is cluster-wide"
        assert obj["metadata"].get("namespace") == name, f"{obj['kind']} {obj['metadata']['name']}"


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_roles_grant_no_wildcards_and_bindings_name_this_namespaces_accounts(build_name: str) -> None:
    roles = {role["metadata"]["name"]: role for role in objects(build_name, "Role")}
    assert roles, "no Role"
    for name, role in roles.items():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in (rule.get(field) or []), f"Role {name}: wildcard in {field}: {rule}"
            assert not rule.get("nonResourceURLs"), f"Role {name}: nonResourceURLs are cluster-wide"
    accounts = {sa["metadata"]["name"] for sa in objects(build_name, "ServiceAccount")}
    namespace = objects(build_name, "Namespace")[0]["metadata"]["name"]
    for binding in objects(build_name, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role", "bind Roles, never ClusterRoles"
        assert binding["roleRef"]["name"] in roles
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert subject["name"] in accounts
            assert subject["namespace"] == namespace
    for name, spec in pod_specs(build_name):
        assert spec["serviceAccountName"] in accounts, f"{name} runs as an account the build lacks"


def test_the_lease_rule_names_the_lease_the_watcher_uses() -> None:
    watcher = one("base", "Deployment", "bucketrun-watcher")
    env = env_of(watcher["spec"]["template"]["spec"]["containers"][0])
    lease = env.get("BUCKETRUN_WATCHER__LEASE_NAME", {}).get(
        "value", WatcherSettings.model_fields["lease_name"].default
    )
    rules = [r for r in one("base", "Role", "bucketrun-watcher")["rules"] if "leases" in r["resources"]]
    named = [r for r in rules if r.get("resourceNames")]
    assert named, "get/update on leases should be limited to the watcher's Lease"
    assert all(r["resourceNames"] == [lease] for r in named)


# -- kustomize: pods --------------------------------------------------------------------------------


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_every_container_is_non_root_without_privilege_escalation(build_name: str) -> None:
    for name, spec in pod_specs(build_name):
        pod = spec.get("securityContext") or {}
        assert (pod.get("seccompProfile") or {}).get("type") == "RuntimeDefault", name
        for container in containers(spec):
            context = container.get("securityContext") or {}
            where = f"{name}/{container['name']}"
            assert context.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert context.get("runAsUser", pod.get("runAsUser", 1)) != 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert not context.get("privileged"), where


PROBES = {
    "dispatcher": ("/healthz", "/readyz"),
    "watcher": ("/healthz", "/readyz"),
    # OSCAR's unauthenticated route: the API has no readiness of its own (each request reaches the store).
    "api": ("/health", "/health"),
}
"""The paths of each container's liveness and readiness probes."""


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_probes_resources_and_a_grace_period_longer_than_the_drain(build_name: str) -> None:
    for name, spec in pod_specs(build_name):
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe, path in zip(
                ("livenessProbe", "readinessProbe"), PROBES[container["name"]], strict=True
            ):
                http = container[probe]["httpGet"]
                assert http["path"] == path, where
                assert http["port"] in ports or http["port"] in ports.values(), where
            env = env_of(container)
            port = int(env.get("BUCKETRUN_METRICS__PORT", {}).get("value", MetricsSettings().port))
            assert port in ports.values(), f"{where}: the metrics port {port} is not a container port"
            resources = container["resources"]
            assert resources["requests"].get("cpu"), where
            assert resources["requests"].get("memory"), where
            assert resources["limits"].get("memory"), where
            drain = float(
                env.get("BUCKETRUN_DISPATCH__DRAIN_TIMEOUT", {}).get(
                    "value", DispatchSettings.model_fields["drain_timeout"].default
                )
            )
            grace = spec.get("terminationGracePeriodSeconds", 30)
            assert grace > drain + 5, f"{where}: terminationGracePeriodSeconds {grace} <= drain {drain} + 5 s"


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_two_replicas_of_each_and_leader_election_through_a_lease(build_name: str) -> None:
    dispatcher = one(build_name, "Deployment", "bucketrun-dispatcher")
    watcher = one(build_name, "Deployment", "bucketrun-watcher")
    assert dispatcher["spec"]["replicas"] >= 2
    assert watcher["spec"]["replicas"] == 2
    watcher_env = env_of(watcher["spec"]["template"]["spec"]["containers"][0])
    assert watcher_env["BUCKETRUN_CLUSTER__EXECUTOR"]["value"] == "kubernetes"
    # Each replica needs its own identity in the Lease: the pod's name.
    assert watcher_env["BUCKETRUN_WATCHER__IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    verbs = {
        verb
        for rule in one(build_name, "Role", "bucketrun-watcher")["rules"]
        if "coordination.k8s.io" in rule["apiGroups"]
        for verb in rule["verbs"]
    }
    assert {"get", "create", "update"} <= verbs


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_env_names_are_real_settings_and_credentials_come_only_from_secrets(build_name: str) -> None:
    for name, spec in pod_specs(build_name):
        for container in containers(spec):
            for entry in container.get("env") or []:
                where = f"{name}/{container['name']} env {entry['name']}"
                if entry["name"].startswith(ENV_PREFIX):
                    assert entry["name"] in SETTINGS_ENV, f"{where}: no such setting (settings.py)"
                if entry["name"] in SECRET_ENV:
                    assert "secretKeyRef" in entry.get("valueFrom", {}), (
                        f"{where}: a credential not from a Secret"
                    )
                value = str(entry.get("value", ""))
                assert not _URL_WITH_PASSWORD.search(value), f"{where}: a URL with a password"
                if _CREDENTIAL_NAME.search(entry["name"]) and entry["name"] not in SECRET_NAMES:
                    assert "value" not in entry, f"{where}: literal value for a credential-like variable"
            assert not container.get("envFrom"), f"{name}: envFrom hides which variables are set"
    # Credentials are created by the operator, never shipped: the one Secret of the build is the services'
    # FDL, and the sample FDL in it carries no secret value.
    secrets = objects(build_name, "Secret")
    assert [secret["metadata"]["name"] for secret in secrets] == ["bucketrun-services"]
    for encoded in secrets[0]["data"].values():
        text = base64.b64decode(encoded).decode()
        services = load_services_text(text, source="sample", base_dir=None).services
        assert not any(service.secrets or service.storage_providers for service in services)


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_dispatcher_watcher_and_stager_use_one_image(build_name: str) -> None:
    dispatcher = one(build_name, "Deployment", "bucketrun-dispatcher")["spec"]["template"]["spec"][
        "containers"
    ][0]
    watcher = one(build_name, "Deployment", "bucketrun-watcher")["spec"]["template"]["spec"]["containers"][0]
    stager = env_of(dispatcher)["BUCKETRUN_CLUSTER__STAGER_IMAGE"]["value"]
    assert dispatcher["image"] == watcher["image"] == stager
    if build_name != "base":
        assert not dispatcher["image"].endswith(":latest"), "an overlay pins the image"


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_the_api_listens_on_every_address_behind_its_service_as_one_replica(build_name: str) -> None:
    spec = one(build_name, "Deployment", "bucketrun-api")["spec"]
    # One process serialises service changes; a rolling update would briefly run two.
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]
    (container,) = pod["spec"]["containers"]
    args = container["args"]
    assert args[0] == "api"
    assert args[args.index("--host") + 1] == "0.0.0.0", "the default host, loopback, is unreachable"
    env = env_of(container)
    default_port = str(ApiSettings.model_fields["port"].default)
    listens = int(
        args[args.index("--port") + 1]
        if "--port" in args
        else env.get(f"{API_PREFIX}PORT", {}).get("value", default_port)
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = one(build_name, "Service", "bucketrun-api")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080, "OSCAR's port, the one oscar-cli users expect"
    assert ports[port["targetPort"]] == listens
    for variable in ("USERNAME", "PASSWORD"):
        reference = env[f"{API_PREFIX}{variable}"]["valueFrom"]["secretKeyRef"]
        assert reference["name"] == "bucketrun-api", variable
    assert pod["spec"]["serviceAccountName"] == "bucketrun-api"
    # Its ConfigMaps are rendered as the dispatcher renders them: same stager image, same namespace.
    dispatcher = one(build_name, "Deployment", "bucketrun-dispatcher")["spec"]["template"]["spec"]
    theirs = env_of(dispatcher["containers"][0])
    assert container["image"] == dispatcher["containers"][0]["image"]
    for variable in (
        "BUCKETRUN_CLUSTER__STAGER_IMAGE",
        "BUCKETRUN_CLUSTER__NAMESPACE",
        "BUCKETRUN_CLUSTER__EXECUTOR",
    ):
        assert env[variable] == theirs[variable], variable
    # Under a read-only root, the one-service FDL file it applies is written to /tmp.
    assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}


@pytest.mark.parametrize("build_name", list(BUILDS))
def test_metrics_services_select_their_pods_and_announce_the_port(build_name: str) -> None:
    for component in ("dispatcher", "watcher", "api"):
        service = one(build_name, "Service", f"bucketrun-{component}-metrics")
        pod = one(build_name, "Deployment", f"bucketrun-{component}")["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (port,) = service["spec"]["ports"]
        container_ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
        assert container_ports[port["targetPort"]] == port["port"]
        annotations = service["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port["port"])
        assert annotations["prometheus.io/path"] == "/metrics"


def test_the_services_fdl_is_a_secret_mounted_where_the_settings_look_and_loads(tmp_path: Path) -> None:
    # A Secret, not a ConfigMap: the FDL may hold environment.secrets values and storage-provider keys.
    assert [obj["metadata"]["name"] for obj in objects("base", "ConfigMap")] == []
    (secret,) = objects("base", "Secret")
    assert (secret["metadata"]["name"], secret["type"]) == ("bucketrun-services", "Opaque")
    api = one("base", "Deployment", "bucketrun-api")["spec"]["template"]["spec"]
    # The services applied through the API: a Secret the API writes (none is shipped), read as a directory.
    api_services = env_of(api["containers"][0])[f"{API_PREFIX}SERVICES_SECRET"]["value"]
    for name, spec in pod_specs("base"):
        container = spec["containers"][0]
        if container["name"] == "api":
            # The API applies what its callers send; it never reads the mounted definitions.
            assert "BUCKETRUN_SERVICES__PATHS" not in env_of(container)
            assert not any("secret" in volume for volume in spec["volumes"]), f"{name} mounts a Secret"
            continue
        paths = yaml.safe_load(env_of(container)["BUCKETRUN_SERVICES__PATHS"]["value"])
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        mounted = []
        for path in paths:
            mount = mounts[path]
            assert "subPath" not in mount, f"{name}: a subPath mount never sees the Secret's updates"
            mounted.append(volumes[mount["name"]]["secret"])
        assert [source["secretName"] for source in mounted] == [secret["metadata"]["name"], api_services]
        assert mounted[1].get("optional") is True, f"{name} would not start before the API's first service"
    # The FDL as the dispatcher will read it: through the real loader, with the default records place.
    storage = StorageSettings.model_fields
    for filename, encoded in secret["data"].items():
        (tmp_path / filename).write_bytes(base64.b64decode(encoded))
    records = (storage["records_bucket"].default, storage["records_prefix"].default)
    catalog = load_catalog((tmp_path,), records)
    assert catalog.services, "the Secret defines no service"


# -- compose --------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def _env(service: str) -> dict[str, str]:
    environment = compose()["services"][service].get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def test_every_compose_image_is_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service.get("image")
        assert image, f"service {name} has no image"
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository, f"service {name}: image {image!r} has no tag"
        assert "/" not in tag, f"service {name}: image {image!r} has no tag"
        assert _PINNED_TAG.match(tag), f"service {name}: image {image!r} is not pinned to a version"


def test_minio_amqp_variables_are_real_names_and_match_bucketruns_amqp_defaults() -> None:
    env = _env("minio")
    amqp = {key: value for key, value in env.items() if key.startswith("MINIO_NOTIFY_AMQP_")}
    target = amqp and next(k for k in amqp if k.startswith("MINIO_NOTIFY_AMQP_ENABLE_")).rsplit("_", 1)[-1]
    assert target, "no AMQP target configured"
    for key in amqp:
        assert key.endswith(f"_{target}"), f"{key}: not of target {target}"
        assert key.removesuffix(f"_{target}") in MINIO_AMQP_ENV, f"{key}: MinIO reads no such variable"

    def setting(name: str) -> str:
        return amqp[f"MINIO_NOTIFY_AMQP_{name}_{target}"]

    defaults = AmqpSettings()
    assert setting("ENABLE") == "on"
    assert setting("EXCHANGE") == defaults.exchange
    assert setting("EXCHANGE_TYPE") == defaults.exchange_type
    assert setting("ROUTING_KEY") == defaults.routing_key
    assert setting("DURABLE") == ("on" if defaults.exchange_durable else "off")
    assert setting("AUTO_DELETED") == "off"  # bucketrun declares it without auto-delete
    # The durable way: persistent messages, a local queue while the broker is away, broker confirms.
    assert setting("DELIVERY_MODE") == "2"
    assert setting("PUBLISHING_CONFIRMS") == "on"
    queue_dir = setting("QUEUE_DIR")
    assert queue_dir.startswith("/")
    volumes = [str(v).split(":") for v in compose()["services"]["minio"]["volumes"]]
    assert any(queue_dir == target_path for _, target_path, *_ in volumes), "queue_dir is not on a volume"
    assert "@rabbitmq:5672" in setting("URL")
    # bucketrun consumes what MinIO publishes: same broker, default exchange.
    for service in ("bucketrun", "dispatcher", "watcher", "poller"):
        assert "BUCKETRUN_AMQP__EXCHANGE" not in _env(service)
        assert "@rabbitmq:5672" in _env(service)["BUCKETRUN_AMQP__URL"]


def _bucketrun_containers() -> list[str]:
    """The compose services running the bucketrun image (built from deploy/Dockerfile)."""
    return [name for name, service in compose()["services"].items() if "build" in service]


def test_the_arn_bucketrun_subscribes_inputs_to_is_the_amqp_target_minio_defines() -> None:
    minio = _env("minio")
    enable = "MINIO_NOTIFY_AMQP_ENABLE_"
    (target,) = [key.removeprefix(enable) for key, value in minio.items() if key.startswith(enable)]
    assert minio[enable + target] == "on"
    # MinIO puts its region in the ARN (arn:minio:sqs:REGION:ID:amqp); none is set here.
    region = minio.get("MINIO_SITE_REGION", minio.get("MINIO_REGION", ""))
    expected = f"arn:minio:sqs:{region}:{target}:amqp"
    default = StorageSettings.model_fields["notify_arn"].default
    containers = _bucketrun_containers()
    assert "services-apply" in containers
    for name in containers:
        arn = _env(name).get("BUCKETRUN_STORAGE__NOTIFY_ARN", default)
        assert arn == expected, f"service {name}: notifications go to {arn}, MinIO's target is {expected}"
        StorageSettings(notify_arn=arn, access_key="k", secret_key="s")  # and bucketrun takes it


def test_services_apply_is_a_one_shot_that_the_processes_wait_for(tmp_path: Path) -> None:
    services = compose()["services"]
    apply = services["services-apply"]
    assert apply["command"][:2] == ["services", "apply"]
    assert "--skip-notifications" not in apply["command"], "MinIO here has the target: wire it"
    assert apply["restart"] == "no", "a one-shot that restarts never completes"
    assert apply["healthcheck"] == {"disable": True}
    assert "profiles" not in apply, "every profile needs the buckets and the notification"
    assert {name: dep["condition"] for name, dep in apply["depends_on"].items()} == {
        "rabbitmq": "service_healthy",
        "minio": "service_healthy",
        "minio-setup": "service_completed_successfully",  # bucketrun's MinIO user
    }
    # What it applies is what the processes load: the same host directory, through the real loader.
    mounts = {target: source for source, target in compose_bind_mounts(apply)}
    paths = [arg for arg in apply["command"][2:] if not arg.startswith("-")]
    assert paths, "services apply names no FDL"
    for path in paths:
        assert path in mounts, f"{path} is not mounted into services-apply"
        assert load_services([COMPOSE_DIR / mounts[path]]).services
    for name in _bucketrun_containers():
        if name in ("services-apply", "api"):  # the API applies what it is sent, and loads no FDL
            continue
        theirs = {target: source for source, target in compose_bind_mounts(services[name])}
        assert mounts.items() <= theirs.items(), f"{name} loads other services than services-apply applied"
        condition = services[name]["depends_on"]["services-apply"]["condition"]
        assert condition == "service_completed_successfully", f"{name} starts before services apply"
    # The mc stopgap no longer wires notifications or makes the services' buckets: services apply does.
    script = (COMPOSE_DIR / "minio-setup.sh").read_text()
    assert "mc event" not in script
    assert re.findall(r"^mc mb .*$", script, re.MULTILINE) == ["mc mb --ignore-existing local/uploads"]


def test_compose_bucketrun_variables_are_real_settings_and_credentials_are_interpolated() -> None:
    for name in compose()["services"]:
        for key, value in _env(name).items():
            if key.startswith(ENV_PREFIX):
                assert key in SETTINGS_ENV, f"service {name}: {key} is not a setting"
            if _CREDENTIAL_NAME.search(key) or key in SECRET_ENV or _URL_WITH_PASSWORD.search(value):
                literal = re.sub(r"\$\{[^}]+\}", "", value)
                assert not _URL_WITH_PASSWORD.search(literal), f"service {name}: {key} holds a password"
                if _CREDENTIAL_NAME.search(key) and not key.endswith("URL"):
                    assert value.startswith("${"), f"service {name}: {key} is a literal credential"
    example = dict(
        line.split("=", 1)
        for line in (COMPOSE_DIR / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    used = set(re.findall(r"\$\{(\w+)", (COMPOSE_DIR / "compose.yaml").read_text()))
    assert used <= example.keys(), f".env.example lacks {sorted(used - example.keys())}"
    assert not (COMPOSE_DIR / ".env").exists() or ".env" in (COMPOSE_DIR / ".gitignore").read_text()


def test_compose_runs_the_processes_and_profiles_the_issue_asks_for() -> None:
    services = compose()["services"]
    assert services["bucketrun"]["command"] == ["serve"]
    assert _env("bucketrun")["BUCKETRUN_CLUSTER__EXECUTOR"] == "local"
    assert services["dispatcher"]["command"] == ["dispatcher"]
    assert services["watcher"]["command"] == ["watcher"]
    assert services["poller"]["command"] == ["poll"]
    assert services["api"]["command"] == ["api", "--host", "0.0.0.0"]
    assert "profiles" not in services["api"], "oscar-cli needs the API whichever processes run"
    assert services["api"]["ports"] == ["127.0.0.1:8080:8080"]
    assert "/health" in str(services["api"]["healthcheck"]["test"])
    # The services applied through the API reach the processes: the API's directory is a volume they
    # mount where their BUCKETRUN_SERVICES__PATHS look.
    volumes = {target: source for source, target, *_ in (v.split(":") for v in services["api"]["volumes"])}
    written_to = volumes[_env("api")[f"{API_PREFIX}SERVICES_DIR"]]
    assert written_to in compose()["volumes"], "the API's directory must be a named volume"
    for name in ("bucketrun", "dispatcher", "watcher", "poller"):
        theirs = {target: source for source, target, *_ in (v.split(":") for v in services[name]["volumes"])}
        paths = yaml.safe_load(_env(name)["BUCKETRUN_SERVICES__PATHS"])
        assert written_to in {theirs.get(path) for path in paths}, f"{name} never reads the API's services"
    assert "poller" in services["poller"]["profiles"]
    assert _env("dispatcher")["BUCKETRUN_CLUSTER__STAGER_IMAGE"] == services["dispatcher"]["image"]
    plugins = (COMPOSE_DIR / "rabbitmq" / "enabled_plugins").read_text().strip()
    assert re.fullmatch(r"\[[a-z_, ]+\]\.", plugins), "enabled_plugins is an Erlang list term"
    assert "rabbitmq_prometheus" in plugins


def test_every_mounted_file_exists() -> None:
    missing = []
    for name, service in compose()["services"].items():
        for source, _ in compose_bind_mounts(service):
            if source.startswith("${"):
                continue  # the user's own file, named in .env (e.g. BUCKETRUN_KUBECONFIG)
            if not (COMPOSE_DIR / source).exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"mounted paths that do not exist: {missing}"
    mounts = {
        source for service in compose()["services"].values() for source, _ in compose_bind_mounts(service)
    }
    for expected in (
        "../prometheus/prometheus.yml",
        "../prometheus/rules",
        "../grafana/provisioning",
        "../grafana/dashboards",
    ):
        assert expected in mounts, f"{expected} is not mounted"
