#!/usr/bin/env python3
"""Checks deploy/k8s offline (Python 3.11; PyYAML and kubernetes-validate from PyPI).

    python3 deploy/check.py                  # every check; exit 1 on any failure
    python3 deploy/check.py --extract DIR    # also write each BFF's ConfigMap config to DIR/<bff>.toml

- the BFF directories are what deploy/k8s/render.py writes (no drift);
- every YAML document validates against the Kubernetes schemas, strictly (unknown fields are
  errors), for the oldest and newest Kubernetes versions supported here;
- each BFF's Deployment, Services, PodDisruptionBudget and HorizontalPodAutoscaler say what a
  safe rollout needs, secrets come from Secrets, and the shutdown timeline adds up.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import tomllib
from pathlib import Path, PurePosixPath

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BFFS = ("mobile", "web", "partner")
# Oldest: the first where the preStop `sleep` action is on by default (beta); newest: the
# latest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
MARGIN_SECONDS = 5
MIN_REPLICAS = 3


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, message: str) -> None:
        self.passed += 1
        print(f"ok    {message}")

    def fail(self, where: Path | str, field: str, message: str) -> None:
        self.failed += 1
        where = where.relative_to(ROOT) if isinstance(where, Path) else where
        print(f"FAIL  {where}: {field}: {message}")

    def expect(self, cond: bool, where: Path, field: str, good: str, bad: str) -> bool:
        rel = where.relative_to(ROOT)
        if cond:
            self.ok(f"{rel}: {field}: {good}")
        else:
            self.fail(where, field, bad)
        return cond


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; the API server refuses them."""


def _mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def get(doc, dotted: str, default=None):
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


_UNITS = {
    **dict.fromkeys(["nsec", "ns"], 1e-9),
    **dict.fromkeys(["usec", "us", "µs"], 1e-6),
    **dict.fromkeys(["msec", "ms"], 1e-3),
    **dict.fromkeys(["seconds", "second", "sec", "s"], 1.0),
    **dict.fromkeys(["minutes", "minute", "min", "m"], 60.0),
    **dict.fromkeys(["hours", "hour", "hr", "h"], 3600.0),
    **dict.fromkeys(["days", "day", "d"], 86400.0),
    **dict.fromkeys(["weeks", "week", "w"], 604800.0),
    **dict.fromkeys(["months", "month", "M"], 2630016.0),
    **dict.fromkeys(["years", "year", "y"], 31557600.0),
}


def humantime(text: str) -> float:
    """Seconds in a humantime duration, as the BFF reads it: "5s", "500ms", "1m 30s"."""
    parts = re.findall(r"(\d+)\s*([a-zA-Zµ]+)", text)
    if not parts or re.sub(r"\s", "", text) != "".join(n + u for n, u in parts):
        raise ValueError(f"not a humantime duration: {text!r}")
    total = 0.0
    for number, unit in parts:
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in {text!r}")
        total += int(number) * _UNITS[unit]
    return total


def quantity(value) -> float:
    """A Kubernetes resource quantity as a number (cores, or bytes)."""
    text = str(value)
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if not m or (m.group(2) and m.group(2) not in suffixes):
        raise ValueError(f"not a quantity: {text!r}")
    return float(m.group(1)) * suffixes.get(m.group(2), 1)


def load_render():
    sys.dont_write_bytecode = True  # no __pycache__ left in the repository
    spec = importlib.util.spec_from_file_location("render", K8S / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_render(c: Checks) -> None:
    render = load_render()
    try:
        problems = render.drift(render.render_all())
    except render.DriftError as error:
        c.fail(K8S / "render.py", "render", str(error))
        return
    for problem in problems:
        path, message = problem.split(": ", 1)
        c.fail(path, "render.py --check", message)
    if not problems:
        c.ok("deploy/k8s/{mobile,web,partner}: identical to what render.py writes")


def load_documents(c: Checks) -> dict[Path, list[dict]]:
    docs: dict[Path, list[dict]] = {}
    for path in sorted(list(K8S.rglob("*.yaml")) + list(K8S.rglob("*.yml"))):
        try:
            docs[path] = [d for d in yaml.load_all(path.read_text(), Loader=UniqueKeyLoader) if d is not None]
        except yaml.YAMLError as error:
            c.fail(path, "yaml", str(error).replace("\n", " "))
    return docs


def check_schemas(c: Checks, docs: dict[Path, list[dict]]) -> None:
    for path, documents in docs.items():
        for i, doc in enumerate(documents):
            where = f"{path.relative_to(ROOT)}[{i}]"
            if not isinstance(doc, dict) or not all(k in doc for k in ("apiVersion", "kind")):
                c.fail(where, "apiVersion/kind", "missing: not a Kubernetes object")
                continue
            if doc["kind"] == "Kustomization":
                continue  # no OpenAPI schema; check_kustomizations reads it
            ident = f"{doc['kind']}/{get(doc, 'metadata.name')}"
            errors = []
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    field = ".".join(str(p) for p in e.path) or "(document)"
                    errors.append(f"Kubernetes {version}: {field}: {e.message}")
                except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                    errors.append(f"Kubernetes {version}: {e.message}")
            if errors:
                for error in errors:
                    c.fail(where, ident, error)
            else:
                c.ok(f"{where}: {ident} validates strictly against Kubernetes {', '.join(KUBERNETES_VERSIONS)}")
            if get(doc, "metadata.namespace") is not None:
                c.fail(where, "metadata.namespace", "set: these manifests go into the caller's namespace")
            if get(doc, "metadata.labels", {}).get("app.kubernetes.io/part-of") != "bff-platform":
                c.fail(where, "metadata.labels", "app.kubernetes.io/part-of: bff-platform missing")


def check_kustomizations(c: Checks, docs: dict[Path, list[dict]]) -> None:
    for directory in sorted({p.parent for p in docs}):
        kustomization = directory / "kustomization.yaml"
        if not kustomization.exists():
            c.fail(directory, "kustomization.yaml", "missing: `kubectl apply -k` needs it")
            continue
        resources = (docs.get(kustomization) or [{}])[0].get("resources", [])
        expected = sorted(
            p.name for p in directory.iterdir()
            if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml" and ".example." not in p.name
        )
        c.expect(
            sorted(resources) == expected,
            kustomization,
            "resources",
            f"lists {', '.join(expected)} (examples left out)",
            f"lists {sorted(resources)}; expected {expected} (every manifest but kustomization.yaml and *.example.yaml)",
        )


def by_kind(documents: dict[Path, list[dict]], kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p, ds in documents.items() for d in ds if isinstance(d, dict) and d.get("kind") == kind]


def selects(selector: dict | None, labels: dict) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def check_pod_security(c: Checks, path: Path, deployment: dict, container: dict) -> None:
    pod = get(deployment, "spec.template.spec", {})
    psc, csc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    nonroot = csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    c.expect(nonroot and uid != 0, path, "securityContext.runAsNonRoot", f"true (uid {uid})", f"must be true with a non-zero uid (uid {uid})")
    c.expect(csc.get("readOnlyRootFilesystem") is True, path, "containers[].securityContext.readOnlyRootFilesystem", "true", "must be true")
    c.expect(csc.get("allowPrivilegeEscalation") is False, path, "containers[].securityContext.allowPrivilegeEscalation", "false", "must be false")
    c.expect(csc.get("privileged") is not True, path, "containers[].securityContext.privileged", "not privileged", "must not be true")
    drop = get(csc, "capabilities.drop", []) or []
    c.expect("ALL" in drop and not get(csc, "capabilities.add"), path, "containers[].securityContext.capabilities", "drop ALL, add none", f"must drop ALL and add none (drop {drop})")
    seccomp = get(csc, "seccompProfile.type") or get(psc, "seccompProfile.type")
    c.expect(seccomp in ("RuntimeDefault", "Localhost"), path, "securityContext.seccompProfile", str(seccomp), f"must be RuntimeDefault (is {seccomp})")
    c.expect(pod.get("automountServiceAccountToken") is False, path, "spec.template.spec.automountServiceAccountToken", "false", "must be false: the pod calls no Kubernetes API")


def port_number(container: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def check_bff(c: Checks, bff: str, all_docs: dict[Path, list[dict]], extract: Path | None) -> None:
    directory = K8S / bff
    docs = {p: ds for p, ds in all_docs.items() if p.parent == directory}
    prefix = f"{bff.upper()}_BFF"
    deployments = by_kind(docs, "Deployment")
    if len(deployments) != 1:
        c.fail(directory, "Deployment", f"expected exactly one, found {len(deployments)}")
        return
    dpath, deployment = deployments[0]
    dname = get(deployment, "metadata.name")
    pod = get(deployment, "spec.template.spec", {})
    pod_labels = get(deployment, "spec.template.metadata.labels", {}) or {}
    containers = pod.get("containers") or []
    if len(containers) != 1:
        c.fail(dpath, "spec.template.spec.containers", f"expected one container, found {len(containers)}")
        return
    container = containers[0]

    # The config, from the ConfigMap the Deployment mounts.
    configmaps = {get(d, "metadata.name"): (p, d) for p, d in by_kind(docs, "ConfigMap")}
    args = container.get("args") or []
    config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else "/etc/bff/config.toml"
    config_dir, config_key = str(PurePosixPath(config_path).parent), PurePosixPath(config_path).name
    mounts = {m.get("mountPath"): m for m in container.get("volumeMounts", [])}
    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    mount = mounts.get(config_dir)
    volume = volumes.get((mount or {}).get("name"), {})
    cm_name = get(volume, "configMap.name")
    config = None
    if c.expect(
        mount is not None and "subPath" not in mount and "subPathExpr" not in mount and cm_name in configmaps
        and mount.get("readOnly") is True,
        dpath,
        "volumeMounts",
        f"{config_dir} is ConfigMap {cm_name} as a read-only directory (no subPath: edits reach the pod)",
        f"{config_dir} (the --config directory) must be a read-only ConfigMap volume of this directory, without subPath",
    ):
        cpath, configmap = configmaps[cm_name]
        text = (configmap.get("data") or {}).get(config_key)
        if text is None:
            c.fail(cpath, f"data.{config_key}", "missing: the file --config names")
        else:
            try:
                config = tomllib.loads(text)
                c.ok(f"{cpath.relative_to(ROOT)}: data.{config_key}: parses as TOML")
            except tomllib.TOMLDecodeError as error:
                c.fail(cpath, f"data.{config_key}", f"not TOML: {error}")
            if config is not None and extract is not None:
                extract.mkdir(parents=True, exist_ok=True)
                (extract / f"{bff}.toml").write_text(text)
                c.ok(f"{cpath.relative_to(ROOT)}: extracted to {extract / f'{bff}.toml'}")
            live = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
            secret_in_config = any("redis://" in line or "rediss://" in line or line.startswith("[[auth.api_keys]]") for line in live)
            c.expect(
                not secret_in_config and config is not None and "url" not in config.get("redis", {})
                and not get(config, "auth.api_keys"),
                cpath,
                f"data.{config_key}",
                "no [redis] url and no [[auth.api_keys]]: secrets stay out of the ConfigMap",
                "holds a Redis URL or API keys: they belong in the Secret",
            )
    tls_mount, tls_volume = mounts.get("/etc/bff-tls"), volumes.get((mounts.get("/etc/bff-tls") or {}).get("name"), {})
    c.expect(
        tls_mount is not None and tls_mount.get("readOnly") is True and get(tls_volume, "secret.optional") is True,
        dpath, "volumeMounts /etc/bff-tls", f"optional Secret {get(tls_volume, 'secret.secretName')}, read-only",
        "must be a read-only, optional Secret volume",
    )
    tmp = volumes.get((mounts.get("/tmp") or {}).get("name"), {})
    c.expect("emptyDir" in tmp, dpath, "volumeMounts /tmp", "emptyDir (the root filesystem is read-only)", "must be an emptyDir")

    # Replicas and rollout.
    replicas = get(deployment, "spec.replicas", 1)
    c.expect(replicas >= MIN_REPLICAS, dpath, "spec.replicas", f"{replicas} (>= {MIN_REPLICAS})", f"{replicas} < {MIN_REPLICAS}")
    c.expect(
        get(deployment, "spec.strategy.type", "RollingUpdate") == "RollingUpdate"
        and get(deployment, "spec.strategy.rollingUpdate.maxUnavailable") in (0, "0%"),
        dpath, "spec.strategy.rollingUpdate.maxUnavailable", "0 (a rollout never lowers capacity)",
        f"must be 0 with RollingUpdate (is {get(deployment, 'spec.strategy.rollingUpdate.maxUnavailable')})",
    )
    c.expect(selects(get(deployment, "spec.selector"), pod_labels), dpath, "spec.selector", "matches the pod labels", "does not match spec.template.metadata.labels")
    spread = {t.get("topologyKey"): t for t in pod.get("topologySpreadConstraints", [])}
    for key, when in (("topology.kubernetes.io/zone", "ScheduleAnyway"), ("kubernetes.io/hostname", "DoNotSchedule")):
        t = spread.get(key, {})
        c.expect(
            t.get("maxSkew") == 1 and t.get("whenUnsatisfiable") == when and selects(t.get("labelSelector"), pod_labels),
            dpath, f"topologySpreadConstraints[{key}]", f"maxSkew 1, {when}, selects the pods",
            f"needs maxSkew 1, whenUnsatisfiable {when} and a labelSelector matching the pods",
        )

    # Ports, in the config and the container.
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    http_port, admin_port = ports.get("http"), ports.get("admin")
    c.expect(http_port is not None and admin_port is not None, dpath, "containers[].ports", f"http {http_port}, admin {admin_port}", "needs ports named http and admin")
    if config is not None:
        listen, admin_listen = get(config, "server.listen", ""), get(config, "server.admin_listen", "")
        c.expect(
            listen.rsplit(":", 1)[-1] == str(http_port) and admin_listen.rsplit(":", 1)[-1] == str(admin_port),
            dpath, "containers[].ports", f"match [server] listen {listen} and admin_listen {admin_listen}",
            f"http {http_port} / admin {admin_port} differ from [server] listen {listen!r} / admin_listen {admin_listen!r}",
        )

    # Probes on the admin listener.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        p = container.get(probe)
        if p is None and probe == "startupProbe":
            continue
        get_ = (p or {}).get("httpGet") or {}
        c.expect(
            get_.get("path") == path and admin_port is not None and port_number(container, get_.get("port")) == admin_port,
            dpath, probe, f"GET {path} on the admin port {admin_port}", f"must be httpGet {path} on the admin port ({admin_port})",
        )

    # Resources.
    resources = container.get("resources") or {}
    complete = all(get(resources, f"{kind}.{r}") is not None for kind in ("requests", "limits") for r in ("cpu", "memory"))
    try:
        ordered = complete and all(
            quantity(get(resources, f"requests.{r}")) <= quantity(get(resources, f"limits.{r}")) for r in ("cpu", "memory")
        )
    except ValueError as error:
        ordered = False
        c.fail(dpath, "resources", str(error))
    c.expect(
        ordered, dpath, "containers[].resources",
        f"requests {resources.get('requests')} <= limits {resources.get('limits')}",
        "needs requests and limits for cpu and memory, requests <= limits",
    )
    check_pod_security(c, dpath, deployment, container)

    # Secrets: from a Secret through envFrom, never literal or from a ConfigMap.
    secrets = {get(d, "metadata.name"): (p, d) for p, d in by_kind(docs, "Secret")}
    env_sources = container.get("envFrom") or []
    secret_keys: set[str] = set()
    for source in env_sources:
        name = get(source, "secretRef.name")
        if name is not None:
            if name not in secrets:
                c.fail(dpath, "envFrom.secretRef", f"Secret {name} has no example in {directory.relative_to(ROOT)}")
                continue
            data = {**(secrets[name][1].get("data") or {}), **(secrets[name][1].get("stringData") or {})}
            secret_keys |= {(source.get("prefix") or "") + k for k in data}
    configmap_env = [s for s in env_sources if "configMapRef" in s]
    literal = [e["name"] for e in container.get("env", []) if e.get("name", "").startswith(f"{prefix}__") and "value" in e]
    needed = [f"{prefix}__REDIS__URL"] + (["PARTNER_BFF__AUTH__API_KEYS"] if bff == "partner" else [])
    for name in needed:
        from_secret_env = any(
            e.get("name") == name and get(e, "valueFrom.secretKeyRef") for e in container.get("env", [])
        )
        c.expect(
            (name in secret_keys or from_secret_env) and not configmap_env and name not in literal,
            dpath, f"env {name}", "from a Secret", "must come from a Secret (envFrom secretRef or secretKeyRef), not a literal or ConfigMap",
        )

    # The grace arithmetic.
    if config is not None:
        try:
            drain = humantime(get(config, "server.drain_delay", "0s"))
            grace = humantime(get(config, "server.shutdown_grace", "20s"))
        except ValueError as error:
            c.fail(cpath, "server.drain_delay / shutdown_grace", str(error))
            drain = grace = None
        pre_stop = get(container, "lifecycle.preStop.sleep.seconds")
        if pre_stop is None:
            c.fail(dpath, "lifecycle.preStop.sleep.seconds", "missing: the native sleep action (no shell in the image)")
            pre_stop = 0
        termination = pod.get("terminationGracePeriodSeconds", 30)
        if drain is not None:
            total = pre_stop + drain + grace + MARGIN_SECONDS
            c.expect(
                total <= termination, dpath, "terminationGracePeriodSeconds",
                f"{termination}s >= preStop {pre_stop}s + drain_delay {drain:g}s + shutdown_grace {grace:g}s + margin {MARGIN_SECONDS}s = {total:g}s",
                f"{termination}s < preStop {pre_stop}s + drain_delay {drain:g}s + shutdown_grace {grace:g}s + margin {MARGIN_SECONDS}s = {total:g}s: in-flight requests would be killed",
            )
            period = get(container, "readinessProbe.periodSeconds", 10)
            failures = get(container, "readinessProbe.failureThreshold", 3)
            c.expect(
                drain > 0 and period * failures <= drain, dpath, "readinessProbe",
                f"periodSeconds {period} x failureThreshold {failures} = {period * failures}s <= drain_delay {drain:g}s",
                f"periodSeconds {period} x failureThreshold {failures} = {period * failures}s > drain_delay {drain:g}s: traffic still arrives after the drain",
            )
        limit_replicas = get(config, "limits.replicas")
        if get(config, "limits.shared"):
            c.expect(
                limit_replicas == replicas, cpath, "[limits] replicas",
                f"{limit_replicas}, the Deployment's replicas", f"{limit_replicas} differs from the Deployment's {replicas}",
            )

    # Services.
    services = {get(d, "metadata.name"): (p, d) for p, d in by_kind(docs, "Service")}
    for name, port_name in ((dname, "http"), (f"{dname}-admin", "admin")):
        spath, service = services.get(name, (directory, None))
        if service is None:
            c.fail(directory, f"Service {name}", "missing")
            continue
        target_ports = [port_number(container, p.get("targetPort", p.get("port"))) for p in get(service, "spec.ports", [])]
        c.expect(
            selects({"matchLabels": get(service, "spec.selector")}, pod_labels)
            and ports.get(port_name) in target_ports and get(service, "spec.type", "ClusterIP") == "ClusterIP",
            spath, f"Service {name}", f"ClusterIP, selects the pods, targets {port_name} ({ports.get(port_name)})",
            f"must be ClusterIP, select the pods and target the {port_name} port ({ports.get(port_name)}); targets {target_ports}",
        )

    # PodDisruptionBudget.
    pdbs = [(p, d) for p, d in by_kind(docs, "PodDisruptionBudget") if selects(get(d, "spec.selector"), pod_labels)]
    if not pdbs:
        c.fail(directory, "PodDisruptionBudget", "none selects the Deployment's pods")
    else:
        ppath, pdb = pdbs[0]
        unavailable, available = get(pdb, "spec.maxUnavailable"), get(pdb, "spec.minAvailable")
        c.expect(
            pdb.get("apiVersion") == "policy/v1" and (unavailable == 1 or (isinstance(available, int) and available < replicas)),
            ppath, "spec", f"policy/v1, selects the pods, maxUnavailable {unavailable}",
            "must be policy/v1 and let one pod go at a time (maxUnavailable 1)",
        )

    # HorizontalPodAutoscaler.
    hpas = [
        (p, d) for p, d in by_kind(docs, "HorizontalPodAutoscaler")
        if get(d, "spec.scaleTargetRef.kind") == "Deployment" and get(d, "spec.scaleTargetRef.name") == dname
    ]
    if not hpas:
        c.fail(directory, "HorizontalPodAutoscaler", f"none targets Deployment {dname}")
    else:
        hpath, hpa = hpas[0]
        low, high = get(hpa, "spec.minReplicas", 1), get(hpa, "spec.maxReplicas", 0)
        c.expect(
            hpa.get("apiVersion") == "autoscaling/v2" and low >= replicas and high >= low
            and get(hpa, "spec.behavior.scaleDown.stabilizationWindowSeconds") is not None,
            hpath, "spec", f"targets {dname}, minReplicas {low} >= replicas {replicas}, maxReplicas {high}, scale-down window set",
            f"must be autoscaling/v2 targeting {dname} with minReplicas ({low}) >= replicas ({replicas}) and a scaleDown stabilization window",
        )


def check_redis(c: Checks, docs: dict[Path, list[dict]]) -> None:
    directory = K8S / "redis"
    redis_docs = {p: ds for p, ds in docs.items() if p.parent == directory}
    deployments = by_kind(redis_docs, "Deployment")
    if len(deployments) != 1:
        c.fail(directory, "Deployment", f"expected exactly one, found {len(deployments)}")
        return
    path, deployment = deployments[0]
    for container in get(deployment, "spec.template.spec.containers", []):
        check_pod_security(c, path, deployment, container)
    services = by_kind(redis_docs, "Service")
    c.expect(
        any(6379 in [p.get("port") for p in get(s, "spec.ports", [])] for _, s in services),
        directory / "service.yaml", "Service", "serves 6379", "no Service on 6379",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extract", type=Path, metavar="DIR", help="write each BFF's config to DIR/<bff>.toml")
    args = parser.parse_args()
    c = Checks()
    check_render(c)
    docs = load_documents(c)
    check_schemas(c, docs)
    check_kustomizations(c, docs)
    for bff in BFFS:
        check_bff(c, bff, docs, args.extract.resolve() if args.extract else None)
    check_redis(c, docs)
    print(f"check.py: {c.passed} passed, {c.failed} failed")
    if c.failed:
        print("check.py: FAILED (each FAIL line names the file and field)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
