"""infra/kubernetes/ as files (no cluster here): the standard kinds valid for Kubernetes with
kubernetes-validate --strict, and the promises the manifests make checked one by one: probes,
drains, budgets, resources, non-root and read-only containers, settings named as in .env.example,
the compose networks as policies, and Traefik's objects carrying the dynamic file's chains."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.ops.processes import granian_command

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "infra" / "kubernetes"
TRAEFIK_KINDS = {"IngressRoute", "Middleware"}  # Traefik's CRDs: checked against the dynamic file
UID = 10001  # the image's user (infra/docker/Dockerfile)


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(FOLDER.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


DOCS = documents()


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = [
        (d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in of_kind("Deployment") + of_kind("Job")
    ]
    specs += [
        (d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        for d in of_kind("CronJob")
    ]
    return specs


@pytest.mark.parametrize(
    ("name", "doc"),
    [(n, d) for n, d in DOCS if d["kind"] not in TRAEFIK_KINDS],
    ids=lambda v: v if isinstance(v, str) else v["kind"] + "/" + v["metadata"]["name"],
)
def test_every_standard_object_is_valid_kubernetes(name: str, doc: dict[str, Any]) -> None:
    latest = kubernetes_validate.latest_version()
    # Raises on anything Kubernetes would refuse, unknown fields included; else names the schema.
    assert latest.startswith(kubernetes_validate.validate(doc, latest, strict=True))


def test_the_validation_can_fail() -> None:
    deployment = copy.deepcopy(named("Deployment", "qr-redirect"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {
        "httpGet": {"path": "/health"}
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_applies_every_file_but_the_secrets_example() -> None:
    listed = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())["resources"]
    files = {p.name for p in FOLDER.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(listed) == files
    assert all(doc["kind"] != "Secret" for name, doc in DOCS if name != "secret.example.yaml")


def test_every_pod_runs_as_the_images_user_read_only_without_privileges() -> None:
    assert f"USER {UID}:{UID}" in (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    specs = pod_specs()
    assert {name for name, _ in specs} == {"qr-redirect", "qr-management", "qr-migrate", "qr-backup"}
    for name, spec in specs:
        assert spec["automountServiceAccountToken"] is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == pod["runAsGroup"] == UID, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, name  # the only writable place besides its volumes
            assert "/run/secrets/qr-database" in mounts, name


def test_the_services_probe_health_and_drain_on_a_stop() -> None:
    for name, port in (("qr-redirect", 8001), ("qr-management", 8002)):
        spec = named("Deployment", name)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez", name
        assert container["ports"] == [{"name": "http", "containerPort": port}], name
        assert {"name": "SERVICE_PORT", "value": str(port)} in container["env"], name
        # The endpoints drop the pod first; then SIGTERM, and the scans buffered are written.
        assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"], name
        assert spec["terminationGracePeriodSeconds"] > 5 + 10, name
        service = named("Service", name)
        assert service["spec"]["selector"] == named("Deployment", name)["spec"]["selector"]["matchLabels"]
    redirect = named("Deployment", "qr-redirect")["spec"]
    assert redirect["template"]["spec"]["containers"][0]["command"] == granian_command(
        "0.0.0.0", 8001, workers="$(REDIRECT_WORKERS)"
    )
    assert redirect["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_redirect_service_scales_on_cpu_and_keeps_one_through_a_drain() -> None:
    autoscaler = named("HorizontalPodAutoscaler", "qr-redirect")["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "qr-redirect",
    }
    assert autoscaler["metrics"][0]["resource"]["name"] == "cpu"
    assert 2 <= autoscaler["minReplicas"] < autoscaler["maxReplicas"]
    budget = named("PodDisruptionBudget", "qr-redirect")["spec"]
    assert budget["minAvailable"] >= 1
    labels = named("Deployment", "qr-redirect")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()


def test_the_settings_are_named_as_in_env_example() -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    settings = named("ConfigMap", "qr-settings")["data"]
    assert set(settings) <= documented, set(settings) - documented
    assert {"DATABASE_URL", "REDIRECT_DATABASE_URL", "DATABASE_PASSWORD_FILE", "ADMIN_ALLOWLIST"} <= set(
        settings
    )
    # No password in any URL, the ConfigMap or the repository: a file from the Secret instead.
    for key in ("DATABASE_URL", "REDIRECT_DATABASE_URL"):
        assert ":" not in settings[key].split("//", 1)[1].split("@", 1)[0], key
    assert settings["DATABASE_PASSWORD_FILE"].startswith("/run/secrets/qr-database/")
    for name, spec in pod_specs():
        names = {e["name"] for c in spec["containers"] for e in c.get("env", [])}
        assert names <= documented | {"SERVICE_PORT"}, (name, names - documented)


def test_backups_go_to_their_volume_on_a_schedule() -> None:
    backup = named("CronJob", "qr-backup")["spec"]
    assert backup["concurrencyPolicy"] == "Forbid"
    spec = backup["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["command"] == ["qr-manage", "backup"]
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == {"qr-backups"}
    assert named("ConfigMap", "qr-settings")["data"]["BACKUP_DIR"] == "/backups"
    assert named("Job", "qr-migrate")["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "qr-manage",
        "migrate",
    ]


def test_the_network_policies_draw_the_compose_networks() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind("NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    pods = {name: spec for name, spec in pod_specs()}
    labels = {
        name: named(kind, name)["spec"]["template"]["metadata"]["labels"]
        if kind != "CronJob"
        else named(kind, name)["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        for kind, name in (
            ("Deployment", "qr-redirect"),
            ("Deployment", "qr-management"),
            ("Job", "qr-migrate"),
            ("CronJob", "qr-backup"),
        )
    }
    assert set(pods) == set(labels)
    behind = policies["traefik-to-services"]["podSelector"]["matchLabels"]
    database = policies["services-to-postgres"]["podSelector"]["matchLabels"]
    # traefik_net: the two services; qr_generator_network: every pod of the project.
    assert {n for n, pod in labels.items() if behind.items() <= pod.items()} == {
        "qr-redirect",
        "qr-management",
    }
    assert {n for n, pod in labels.items() if database.items() <= pod.items()} == set(labels)
    ports = {p["port"] for rule in policies["traefik-to-services"]["ingress"] for p in rule["ports"]}
    assert ports == {8001, 8002}
    egress = policies["services-to-postgres"]["egress"]
    assert {p["port"] for rule in egress for p in rule["ports"]} == {5432, 53}


def _file_routers() -> dict[str, dict[str, Any]]:
    """The dynamic file's routers on the public entry points: priority, middlewares, service (read
    from its template text; the admin routers' loop read for its public door, whose allowlist is
    ADMIN_ALLOWLIST's)."""
    text = (ROOT / "infra" / "traefik" / "dynamic_conf.yml").read_text()
    section = text.split("\n  routers:\n", 1)[1].split("\n  middlewares:\n", 1)[0]
    section = section.replace("{{ $suffix }}", "").replace("{{ $allowlist }}", "admin-allowlist")
    routers = {}
    for name, body in re.findall(r"^    ([a-z-]+):\n((?:      .*\n|#.*\n|\{\{.*\n)+)", section + "\n", re.M):
        routers[name] = {
            "priority": int(re.search(r"priority: (\d+)", body)[1]),  # type: ignore[index]
            "middlewares": re.search(r"middlewares: \[([^\]]*)\]", body)[1].split(", "),  # type: ignore[index]
            "service": re.search(r"service: (.+)", body)[1].strip(),  # type: ignore[index]
        }
    return routers


def _file_middlewares() -> dict[str, str]:
    """Each middleware of the dynamic file and its kind (errors, headers, rateLimit, ...)."""
    text = (ROOT / "infra" / "traefik" / "dynamic_conf.yml").read_text()
    section = text.split("\n  middlewares:\n", 1)[1].split("\n  services:\n", 1)[0]
    return dict(re.findall(r"^    ([a-z-]+):\n      ([A-Za-z]+):", section, re.M))


def test_traefiks_objects_carry_the_dynamic_files_chains() -> None:
    (route_object,) = of_kind("IngressRoute")
    routes = {route["priority"]: route for route in route_object["spec"]["routes"]}
    # The edge's pages: the management service's (the dynamic file's failover has no kind here).
    services = {
        "{{ $redirect }}": "qr-redirect",
        "management": "qr-management",
        "edge-pages": "qr-management",
    }
    file_routers = _file_routers()
    # The IngressRoute serves HTTPS only: the file's plain-HTTP router for /r/ stays out, and its
    # HTTPS router differs from it by the headers alone (HSTS).
    plain_http = file_routers.pop("redirect")
    assert {**plain_http, "middlewares": None} == {**file_routers["redirect-secure"], "middlewares": None}
    assert len(file_routers) == len(routes) == 8
    for name, router in file_routers.items():
        route = routes[router["priority"]]
        assert [m["name"] for m in route["middlewares"]] == router["middlewares"], name
        assert [s["name"] for s in route["services"]] == [services[router["service"]]], name
    assert routes[300]["match"] == "PathPrefix(`/r/`)"
    assert routes[300]["observability"] == {"metrics": False}  # the hot router, as in the file
    middlewares = {m["metadata"]["name"]: next(iter(m["spec"])) for m in of_kind("Middleware")}
    only_plain_http = set(plain_http["middlewares"]).difference(
        *(r["middlewares"] for r in file_routers.values())
    )
    assert only_plain_http == {"redirect-headers-http"}
    compose_only = {"local-admin-allowlist"}  # the Docker host's loopback door (LOCAL_ADMIN_ALLOWLIST)
    assert middlewares == {
        name: kind for name, kind in _file_middlewares().items() if name not in only_plain_http | compose_only
    }
    errors = named("Middleware", "edge-errors")["spec"]["errors"]
    assert errors["service"] == {"name": "qr-management", "port": 8002}
    # Every method but GET and HEAD is a write, whatever its case (Traefik matches methods exactly).
    writes = routes[110]["match"]
    assert writes.endswith("!Method(`GET`) && !Method(`HEAD`)"), writes


def test_the_admin_api_is_closed_until_its_allowlist_is_filled_in() -> None:
    """No default opens the API: the allowlist is a documentation address nobody has, never the
    cluster's ranges; Traefik keeps clients' own addresses (externalTrafficPolicy: Local)."""
    import ipaddress

    documentation = ipaddress.ip_network("192.0.2.0/24")  # TEST-NET-1, RFC 5737
    settings = named("ConfigMap", "qr-settings")["data"]
    allowlist = named("Middleware", "admin-allowlist")["spec"]["ipAllowList"]["sourceRange"]
    for cidr in [*allowlist, settings["ADMIN_ALLOWLIST"], settings["TRUSTED_PROXIES"]]:
        assert ipaddress.ip_network(cidr).subnet_of(documentation), cidr
    values = yaml.safe_load((FOLDER / "helm" / "traefik-values.yaml").read_text())
    assert values["service"]["spec"]["externalTrafficPolicy"] == "Local"
    assert values["providers"]["kubernetesCRD"]["allowEmptyServices"] is True
    assert values["logs"]["general"]["format"] == "json"


def test_traefik_collects_garbage_as_compose_and_make_run_start_it() -> None:
    from services.ops.settings import StackSettings

    values = yaml.safe_load((FOLDER / "helm" / "traefik-values.yaml").read_text())
    assert {env["name"]: env["value"] for env in values["env"]}["GOGC"] == str(StackSettings.edge_gogc)
    compose = yaml.safe_load((FOLDER.parents[1] / "compose.yaml").read_text())
    shipped = compose["services"]["traefik"]["environment"]["GOGC"]
    assert shipped == f"${{EDGE_GOGC:-{StackSettings.edge_gogc}}}"


def test_the_connection_budget_holds_at_the_autoscalers_most() -> None:
    from services.ops.budget import Budget

    settings = named("ConfigMap", "qr-settings")["data"]
    most = named("HorizontalPodAutoscaler", "qr-redirect")["spec"]["maxReplicas"]
    assert settings["REDIRECT_REPLICAS"] == str(most)
    wanted = Budget.from_env({k: v for k, v in settings.items() if k != "DATABASE_PASSWORD_FILE"})
    assert wanted.replicas == most
    assert wanted.lookups_elsewhere  # the lookups on the read replica
    assert wanted.refusal(97, 100, 3) is None  # PostgreSQL's default max_connections
