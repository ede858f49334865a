"""The checks of deploy/kubernetes (test_kubernetes_manifests.py runs them). Each takes the
folder as read (`Manifests`) and raises AssertionError saying what disagrees, so that a test
can run it on a broken copy of the folder as well and see it fail.

No Kubernetes cluster is involved: the manifests are checked against Kubernetes' schemas
(kubernetes-validate, whose schemas ship inside the package) and against the code they
configure: the configuration is given to the built `aerogrid serve`, its keys are compared
with the key lists of ServerConfiguration.swift, the probe paths with the routes, the ports
with the configuration's listeners.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
SETUP = REPO / "scripts" / "setup"
CONFIGURATION_SOURCE = REPO / "Sources" / "AeroGridServer" / "ServerConfiguration.swift"
CLUSTER_SETTINGS_SOURCE = REPO / "Sources" / "AeroGridCluster" / "ClusterSettings.swift"
SERVE_SOURCE = REPO / "Sources" / "aerogrid" / "ServerCommands.swift"
ROUTES_SOURCE = REPO / "Sources" / "AeroGridServer" / "Routes" / "SystemRoutes.swift"
OPENAPI = REPO / "Sources" / "AeroGridAPI" / "openapi.json"
CLUSTER_DOC = REPO / "docs" / "cluster.md"

# The Kubernetes versions the manifests are validated against: the oldest they are written for
# (persistentVolumeClaimRetentionPolicy is GA from 1.32) and the newest whose schemas the
# pinned kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")

# What the pod's own fields are in a pod of this StatefulSet: its first pod's name, and the
# kustomization's namespace.
FIELD_REFS = ("metadata.name", "metadata.namespace")

# `aerogrid serve` given the configuration: one that refuses it exits at once, naming the file;
# one that takes it opens its store in data_dir, then hands [kafka.properties] to librdkafka
# and waits for Kafka (which is not there) until stopped. It is watched until it has done both
# (librdkafka's log, or SERVE_SETTLE seconds after the store), or has exited, for at most
# SERVE_TIMEOUT seconds.
SERVE_SETTLE = 2.0
SERVE_TIMEOUT = 60.0

# A token the server takes (Tokens.swift, TokenSecret.isWellFormed).
WELL_FORMED_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,256}")


def pinned_kubernetes_validate() -> str:
    """The kubernetes-validate version scripts/setup installs (`kubernetes_validate_version=`)."""
    found = re.search(r"^kubernetes_validate_version=(\S+)$", SETUP.read_text(), re.MULTILINE)
    assert found, f"{SETUP} names no kubernetes_validate_version="
    return found.group(1)


@dataclass
class Manifests:
    """deploy/kubernetes as read: the kustomization and each manifest file's documents."""

    directory: Path
    kustomization: dict
    documents: dict = field(default_factory=dict)  # file name: [document, …]

    @classmethod
    def read(cls, directory: Path) -> Manifests:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        documents = {}
        for path in sorted(directory.iterdir()):
            if path.suffix in (".yaml", ".yml") and path.name != "kustomization.yaml":
                documents[path.name] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        return cls(directory, kustomization, documents)

    def copy_to(self, directory: Path) -> Manifests:
        """A copy written to `directory` (comments are lost), for breaking it."""
        directory.mkdir(parents=True)
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(self.kustomization, sort_keys=False))
        for name, docs in self.documents.items():
            (directory / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return Manifests(directory, copy.deepcopy(self.kustomization), copy.deepcopy(self.documents))

    def save(self) -> None:
        """Writes the documents back, after a test changed them."""
        (self.directory / "kustomization.yaml").write_text(yaml.safe_dump(self.kustomization, sort_keys=False))
        for name, docs in self.documents.items():
            (self.directory / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def all(self, kind: str) -> list:
        return [doc for docs in self.documents.values() for doc in docs if doc.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [doc for doc in self.all(kind) if name is None or doc["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}"
        return found[0]

    @property
    def statefulset(self) -> dict:
        return self.one("StatefulSet")

    @property
    def pod(self) -> dict:
        return self.statefulset["spec"]["template"]["spec"]

    @property
    def pod_labels(self) -> dict:
        return self.statefulset["spec"]["template"]["metadata"].get("labels", {})

    @property
    def container(self) -> dict:
        containers = self.pod["containers"]
        assert len(containers) == 1, f"expected the StatefulSet to have one container, found {len(containers)}"
        return containers[0]

    @property
    def namespace(self) -> str:
        namespace = self.kustomization.get("namespace")
        assert namespace, "kustomization.yaml names no namespace"
        return namespace

    @property
    def pod_name(self) -> str:
        return f"{self.statefulset['metadata']['name']}-0"

    def field_value(self, path: str) -> str:
        return {"metadata.name": self.pod_name, "metadata.namespace": self.namespace}[path]

    def env(self, name: str) -> dict:
        found = [entry for entry in self.container.get("env", []) if entry["name"] == name]
        assert len(found) == 1, f"the container sets {name} {len(found)} times, not once"
        return found[0]

    def start_script(self) -> str:
        command = self.container.get("command", []) + self.container.get("args", [])
        assert command[:2] == ["/bin/sh", "-ec"] and len(command) == 3, \
            f"expected the container to run its start script with /bin/sh -ec SCRIPT, not {command[:2]}"
        return command[2]

    def mounted_file(self, path: str) -> str:
        """The text of a file the container reads from a ConfigMap or Secret volume."""
        directory, name = path.rsplit("/", 1)
        mounts = [m for m in self.container.get("volumeMounts", []) if m["mountPath"].rstrip("/") == directory]
        assert len(mounts) == 1, f"the start script reads {path}, but no volume is mounted at {directory}"
        volumes = [v for v in self.pod.get("volumes", []) if v["name"] == mounts[0]["name"]]
        assert len(volumes) == 1, f"no volume {mounts[0]['name']} for the mount at {directory}"
        volume = volumes[0]
        if "configMap" in volume:
            source, kind, data_keys = volume["configMap"], "ConfigMap", ("data",)
            object_name = source["name"]
        elif "secret" in volume:
            source, kind, data_keys = volume["secret"], "Secret", ("stringData", "data")
            object_name = source["secretName"]
        else:
            raise AssertionError(f"{path}: volume {volume['name']} is neither a ConfigMap nor a Secret")
        key = name
        if "items" in source:
            keys = [item["key"] for item in source["items"] if item["path"] == name]
            assert keys, f"{path}: volume {volume['name']} has no item with path {name}"
            key = keys[0]
        document = self.one(kind, object_name)
        for data_key in data_keys:
            if key in document.get(data_key, {}):
                assert data_key != "data" or kind == "ConfigMap", f"{path}: give Secret {object_name} as stringData"
                return document[data_key][key]
        raise AssertionError(f"{path}: {kind} {object_name} has no key {key}")

    def rendered_config(self) -> tuple:
        """(the configuration the start script writes, the path it writes it to), by
        following the script's own commands: `sed -e "s/@X@/$X/g" … TEMPLATE > OUT`, then
        `cat FILE >> OUT`, then `exec … serve --config OUT`."""
        script = self.start_script().replace("\\\n", " ")
        text = None
        output = None
        served = None
        for line in script.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            if words[0] == "sed":
                assert words[-2] == ">", f"the start script's sed must write the configuration with >: {line.strip()}"
                output = words[-1]
                text = self.mounted_file(words[-3])
                expressions = [words[i + 1] for i, word in enumerate(words) if word == "-e"]
                for expression in expressions:
                    replaced = re.fullmatch(r"s/@(\w+)@/\$(\w+)/g", expression)
                    assert replaced, f"the start script substitutes something else than @NAME@ with $NAME: {expression}"
                    placeholder, variable = replaced.groups()
                    value = self.env(variable).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                    assert value in FIELD_REFS, f"${variable} must come from the pod's {' or '.join(FIELD_REFS)}, not {value}"
                    text = text.replace(f"@{placeholder}@", self.field_value(value))
            elif words[0] == "cat" and len(words) == 4 and words[2] == ">>":
                assert text is not None and words[3] == output, f"the start script appends to another file: {line.strip()}"
                text += self.mounted_file(words[1])
            elif words[0] == "exec":
                assert "--config" in words, f"the start script runs aerogrid without --config: {line.strip()}"
                served = words[words.index("--config") + 1]
                assert words[1:].count("serve") == 1, f"the start script does not run `aerogrid serve`: {line.strip()}"
        assert text is not None, "the start script writes no configuration (no sed … > FILE)"
        assert served == output, f"the start script writes {output} but serves {served}"
        left = sorted(set(re.findall(r"@\w+@", text)))
        assert not left, f"placeholders the start script does not replace: {', '.join(left)}"
        return text, output

    def config(self) -> dict:
        text, _ = self.rendered_config()
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise AssertionError(f"the rendered aerogrid.toml is not TOML: {error}") from None


def listener_port(config: dict, key: str) -> int | None:
    if key not in config:
        return None
    found = re.fullmatch(r"(.*):(\d+)", str(config[key]))
    assert found, f"{key} = {config[key]!r} is not HOST:PORT"
    return int(found.group(2))


def container_ports(manifests: Manifests) -> dict:
    return {port["name"]: port["containerPort"] for port in manifests.container.get("ports", []) if "name" in port}


def probes(manifests: Manifests) -> dict:
    return {kind: manifests.container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
            if kind in manifests.container}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# ---- the checks


def check_kustomization(manifests: Manifests) -> None:
    """kustomization.yaml lists every manifest of the folder, each once, and nothing else; it
    names the namespace and the image the StatefulSet uses."""
    listed = manifests.kustomization.get("resources", [])
    assert len(listed) == len(set(listed)), f"kustomization.yaml lists a file twice: {listed}"
    present = sorted(manifests.documents)
    missing = sorted(set(present) - set(listed))
    extra = sorted(set(listed) - set(present))
    assert not missing, f"manifests kustomization.yaml does not list: {', '.join(missing)}"
    assert not extra, f"kustomization.yaml lists files that are not in {manifests.directory}: {', '.join(extra)}"
    for name, docs in manifests.documents.items():
        assert docs, f"{name} holds no document"
    assert manifests.namespace
    images = {image["name"] for image in manifests.kustomization.get("images", [])}
    for container in manifests.pod["containers"]:
        assert container["image"] in images, f"kustomization.yaml's images does not set {container['image']}"


def check_schemas(manifests: Manifests, version: str) -> None:
    """Every document validates strictly (no field Kubernetes does not know) against the
    schemas of Kubernetes `version`. kubernetes-validate only warns, and exits 0, for a kind or
    apiVersion it has no schema for: that counts as a failure here."""
    files = list(manifests.documents)
    run = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, *files],
                         cwd=manifests.directory, capture_output=True, text=True, timeout=300)
    lines = (run.stdout + run.stderr).splitlines()
    problems = [line for line in lines if line.startswith(("WARN", "ERROR", "FATAL"))]
    assert run.returncode == 0 and not problems, \
        f"kubernetes-validate --strict -k {version} (exit {run.returncode}):\n" + "\n".join(problems or lines)
    minor = ".".join(version.split(".")[:2])
    for name, docs in manifests.documents.items():
        for doc in docs:
            expected = f"INFO {name} passed for resource {doc['kind'].lower()}/{doc['metadata']['name']} against version {minor}"
            assert expected in lines, f"kubernetes-validate did not say: {expected}\n" + "\n".join(lines)


def check_peer_service(manifests: Manifests) -> None:
    """The StatefulSet's serviceName is a headless Service of the folder that selects its
    pods, and publishes them before they are ready (a peer fetches bundles from a node that
    is not ready); the StatefulSet's own selector selects its pods."""
    statefulset = manifests.statefulset
    assert selects(statefulset["spec"]["selector"].get("matchLabels", {}), manifests.pod_labels), \
        "the StatefulSet's selector does not select its own pods"
    name = statefulset["spec"].get("serviceName")
    services = [s for s in manifests.all("Service") if s["metadata"]["name"] == name]
    assert services, f"the StatefulSet's serviceName {name!r} is no Service of {manifests.directory}"
    service = services[0]["spec"]
    assert service.get("clusterIP") == "None", f"Service {name} is not headless (clusterIP: None)"
    assert service.get("publishNotReadyAddresses") is True, f"Service {name} does not publish pods before they are ready"
    assert selects(service.get("selector", {}), manifests.pod_labels), f"Service {name} does not select the StatefulSet's pods"


def check_services(manifests: Manifests) -> None:
    """Every Service selects the StatefulSet's pods, and each of its ports targets a container
    port by that port's name."""
    ports = container_ports(manifests)
    services = manifests.all("Service")
    assert len(services) >= 2, "expected a headless Service for the nodes and a Service for clients"
    for service in services:
        name = service["metadata"]["name"]
        spec = service["spec"]
        assert selects(spec.get("selector", {}), manifests.pod_labels), \
            f"Service {name}'s selector {spec.get('selector')} does not select the pods ({manifests.pod_labels})"
        assert spec.get("ports"), f"Service {name} has no port"
        for port in spec["ports"]:
            target = port.get("targetPort")
            assert isinstance(target, str), f"Service {name} port {port.get('name')} must target a container port by name, not {target!r}"
            assert target in ports, f"Service {name} targets port {target!r}; the container's are {sorted(ports)}"


def check_disruption_budget(manifests: Manifests) -> None:
    """The PodDisruptionBudget selects the StatefulSet's pods (and by labels only)."""
    budget = manifests.one("PodDisruptionBudget")
    selector = budget["spec"].get("selector", {})
    assert not selector.get("matchExpressions"), "the PodDisruptionBudget's selector should use matchLabels only"
    assert selects(selector.get("matchLabels", {}), manifests.pod_labels), \
        f"the PodDisruptionBudget's selector {selector} does not select the pods ({manifests.pod_labels})"


def check_ports(manifests: Manifests) -> None:
    """The container's ports are the configuration's listeners (`listen`, `http_listen`), and
    the probes ask one of them in its own scheme: HTTPS on `listen` when [tls] is set."""
    config = manifests.config()
    listeners = {key: port for key in ("listen", "http_listen") if (port := listener_port(config, key)) is not None}
    assert "listen" in listeners, "aerogrid.toml has no listen"
    ports = container_ports(manifests)
    assert sorted(ports.values()) == sorted(listeners.values()), \
        f"the container's ports {ports} are not the listeners of aerogrid.toml {listeners}"
    assert len(ports) == len(manifests.container.get("ports", [])), "every container port needs a name"
    for kind, probe in probes(manifests).items():
        get = probe.get("httpGet")
        assert get, f"the {kind} is not an HTTP GET"
        port = ports.get(get["port"], get["port"])
        assert port in listeners.values(), f"the {kind} asks port {get['port']}, which is no listener of aerogrid.toml"
        tls = "tls" in config and port == listeners["listen"]
        scheme = get.get("scheme", "HTTP")
        assert scheme == ("HTTPS" if tls else "HTTP"), f"the {kind} asks port {port} over {scheme}; it serves {'HTTPS' if tls else 'HTTP'}"


def check_probe_paths(manifests: Manifests) -> None:
    """Each probe's path is a route of SystemRoutes.swift and of openapi.json: liveness and
    startup /healthz (the process answers), readiness /readyz (the store and Kafka answer)."""
    routes = {"/" + route for route in re.findall(r'router\.get\("([^"]+)"\)', ROUTES_SOURCE.read_text())}
    assert routes, f"no router.get(\"…\") in {ROUTES_SOURCE}: update check_probe_paths"
    documented = {path for path, operations in json.loads(OPENAPI.read_text())["paths"].items() if "get" in operations}
    found = probes(manifests)
    assert {"livenessProbe", "readinessProbe"} <= set(found), "the container needs a liveness and a readiness probe"
    for kind, probe in found.items():
        path = probe["httpGet"]["path"]
        assert path in routes, f"the {kind}'s path {path} is not a route of {ROUTES_SOURCE.name}: {sorted(routes)}"
        assert path in documented, f"the {kind}'s path {path} is not a GET of openapi.json"
        wanted = "/readyz" if kind == "readinessProbe" else "/healthz"
        assert path == wanted, f"the {kind} should ask {wanted}, not {path}"


def accepted_keys() -> dict:
    """The keys ServerConfiguration.swift reads, by section ("" is the top level), taken from
    its source: aerogrid has no mode that only checks a file, and it refuses unknown keys at
    the top, in [cluster], [http], [apps] and [stream] but not in [sandbox], [tls] or [kafka]."""
    source = CONFIGURATION_SOURCE.read_text()

    def strings(text: str) -> set:
        return set(re.findall(r'"(\w+)"', text))

    keys = {}
    top = re.search(r"let sections = \[(.*?)\]", source, re.DOTALL)
    cluster = re.search(r"let known = \[(.*?)\]", source, re.DOTALL)
    assert top and cluster, f"{CONFIGURATION_SOURCE} has changed shape: update accepted_keys()"
    keys[""] = strings(top.group(1))
    keys["cluster"] = strings(cluster.group(1))
    for section in ("apps", "stream", "http"):
        block = re.search(rf'Limits\({section}, section: "{section}".*?limits\.finish\(\)', source, re.DOTALL)
        assert block, f"{CONFIGURATION_SOURCE} reads no [{section}] with Limits: update accepted_keys()"
        keys[section] = set(re.findall(r'limits\.\w+\("(\w+)"', block.group(0)))
    for section in ("sandbox", "tls", "kafka"):
        keys[section] = set(re.findall(rf'\b{section}\["(\w+)"\]', source))
    for section, found in keys.items():
        assert found, f"found no keys of [{section}] in {CONFIGURATION_SOURCE}: update accepted_keys()"
    return keys


def check_config_keys(manifests: Manifests) -> None:
    """Every key of the configuration the pod runs with is one the server reads, and the
    [kafka.properties] values are what it takes (strings, numbers, booleans)."""
    config = manifests.config()
    keys = accepted_keys()
    unknown = sorted(set(config) - keys[""])
    assert not unknown, f"aerogrid.toml: unknown top-level keys {unknown} (the server reads {sorted(keys[''])})"
    for section, table in config.items():
        if section not in keys or not isinstance(table, dict):
            continue
        known = keys[section]
        unknown = sorted(set(table) - known)
        assert not unknown, f"aerogrid.toml: [{section}] {unknown} are not keys the server reads ({sorted(known)})"
    for key, value in config.get("kafka", {}).get("properties", {}).items():
        assert isinstance(value, str | int | bool), \
            f"[kafka.properties] {key} is a {type(value).__name__}: quote a property name with dots (\"{key}.…\" = …)"


def check_config_with_binary(manifests: Manifests, binary: Path, scratch: Path) -> None:
    """The built `aerogrid serve` takes the configuration the pod runs with: it reads it (every
    value checked), opens its store and hands [kafka.properties] to librdkafka, then waits for
    Kafka. Only what would touch this machine differs from the pod's: the data directory (a
    scratch one) and the listener (loopback, any port)."""
    text, _ = manifests.rendered_config()
    data = scratch / "data"
    text, count = re.subn(r"(?m)^data_dir\s*=.*$", f'data_dir = "{data}"', text, count=1)
    assert count == 1, "aerogrid.toml has no data_dir line"
    text = re.sub(r"(?m)^listen\s*=.*$", 'listen = "127.0.0.1:0"', text, count=1)
    path = scratch / "aerogrid.toml"
    path.write_text(text)
    path.chmod(0o600)
    out, err = scratch / "serve.stdout", scratch / "serve.stderr"
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch)}
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen([str(binary), "serve", "--config", str(path)], stdout=stdout, stderr=stderr,
                                   env=environment, cwd=scratch, start_new_session=True)
    started = time.monotonic()
    store_opened = None
    try:
        while process.poll() is None and time.monotonic() - started < SERVE_TIMEOUT:
            if store_opened is None and (data / "aerogrid.sqlite").exists():
                store_opened = time.monotonic()
            if store_opened is not None and ("kafka.facility=" in err.read_text()
                                             or time.monotonic() - store_opened > SERVE_SETTLE):
                break
            time.sleep(0.05)
        time.sleep(0.2)  # an exit right after librdkafka's first line
    finally:
        code = process.poll()
        if code is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    output = (err.read_text() + out.read_text()).strip()[-3000:]
    stale = ""
    newer = [source.name for source in (CONFIGURATION_SOURCE, CLUSTER_SETTINGS_SOURCE)
             if source.stat().st_mtime > binary.stat().st_mtime]
    if newer:
        stale = f"\n(note: {binary} is older than {', '.join(newer)}: make build)"
    assert f"{path}:" not in output, f"aerogrid serve refused the configuration:\n{output}{stale}"
    assert code is None, f"aerogrid serve exited ({code}) instead of waiting for Kafka:\n{output}{stale}"
    assert store_opened is not None, \
        f"aerogrid serve neither refused the configuration nor opened its store in {SERVE_TIMEOUT:.0f} s:\n{output}{stale}"


def check_node_identity(manifests: Manifests) -> None:
    """node_id is the pod's name and advertised_url the pod's DNS name through the
    StatefulSet's headless Service, on the port of `listen`."""
    config = manifests.config()
    cluster = config.get("cluster")
    assert isinstance(cluster, dict), "aerogrid.toml has no [cluster]"
    assert cluster.get("node_id") == manifests.pod_name, \
        f"node_id renders to {cluster.get('node_id')!r} in pod {manifests.pod_name}, not the pod's name"
    scheme = "https" if "tls" in config else "http"
    service = manifests.statefulset["spec"].get("serviceName")
    wanted = f"{scheme}://{manifests.pod_name}.{service}.{manifests.namespace}.svc:{listener_port(config, 'listen')}"
    assert cluster.get("advertised_url") == wanted, \
        f"advertised_url renders to {cluster.get('advertised_url')!r} in pod {manifests.pod_name}, not {wanted!r}"


def check_data_dir(manifests: Manifests) -> None:
    """data_dir is where the volumeClaimTemplate's volume is mounted."""
    config = manifests.config()
    claims = {claim["metadata"]["name"] for claim in manifests.statefulset["spec"].get("volumeClaimTemplates", [])}
    assert claims, "the StatefulSet has no volumeClaimTemplate"
    mounted = {mount["mountPath"].rstrip("/") for mount in manifests.container.get("volumeMounts", []) if mount["name"] in claims}
    assert config.get("data_dir", "").rstrip("/") in mounted, \
        f"data_dir = {config.get('data_dir')!r} is not where a volumeClaimTemplate is mounted ({sorted(mounted)})"


def check_operator_token(manifests: Manifests) -> None:
    """The operator token reaches `aerogrid serve` the way it reads it (AEROGRID_OPERATOR_TOKEN),
    from a Secret of the folder; the value shipped is a placeholder the server refuses, so no
    cluster runs with a token published in this repository."""
    name = "AEROGRID_OPERATOR_TOKEN"
    assert f'environment["{name}"]' in SERVE_SOURCE.read_text(), f"{SERVE_SOURCE.name} no longer reads {name}"
    reference = manifests.env(name).get("valueFrom", {}).get("secretKeyRef")
    assert reference, f"{name} must come from a Secret (secretKeyRef)"
    secret = manifests.one("Secret", reference["name"])
    value = secret.get("stringData", {}).get(reference["key"])
    assert value is not None, f"Secret {reference['name']} has no stringData key {reference['key']}"
    assert not WELL_FORMED_TOKEN.fullmatch(value), \
        f"Secret {reference['name']} ships a token the server would take: keep a placeholder it refuses"


# The capabilities docs/cluster.md argues, one by one, and the rest of the securityContext.
CAPABILITIES = ("SYS_ADMIN", "SETUID", "SETGID", "CHOWN")


def check_security_context(manifests: Manifests) -> None:
    """The securityContext is the one docs/cluster.md argues, item by item, and the section
    names each capability."""
    context = manifests.container.get("securityContext", {})
    assert manifests.pod.get("hostUsers") is True, "hostUsers must be true (docs/cluster.md, Kubernetes)"
    assert context.get("privileged") is False, "the container must not be privileged"
    assert context.get("runAsUser") == 0, "the supervisor runs as root"
    assert context.get("allowPrivilegeEscalation") is True, "allowPrivilegeEscalation: true, said outright"
    capabilities = context.get("capabilities", {})
    assert capabilities.get("drop") == ["ALL"], "drop every capability, then add the argued ones"
    assert sorted(capabilities.get("add", [])) == sorted(CAPABILITIES), \
        f"capabilities added {capabilities.get('add')}, argued {list(CAPABILITIES)}"
    assert context.get("seccompProfile") == {"type": "Unconfined"}, "seccompProfile: Unconfined, as argued"
    assert context.get("appArmorProfile") == {"type": "Unconfined"}, "appArmorProfile: Unconfined, as argued"
    section = CLUSTER_DOC.read_text().partition("\n## Kubernetes")[2].partition("\n## ")[0]
    assert section, f"{CLUSTER_DOC} has no section ## Kubernetes"
    for word in (*CAPABILITIES, "hostUsers", "privileged", "allowPrivilegeEscalation", "seccompProfile",
                 "appArmorProfile", "procMount", "readOnlyRootFilesystem"):
        assert f"`{word}" in section, f"docs/cluster.md's Kubernetes section does not argue `{word}`"


def check_resources(manifests: Manifests) -> None:
    """As argued in statefulset.yaml: memory requested as much as its limit (the apps' cgroups
    are below the container's), CPU requested and not limited (each app has its own quota)."""
    resources = manifests.container.get("resources", {})
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    assert requests.get("memory") and requests.get("memory") == limits.get("memory"), \
        f"memory request {requests.get('memory')} should equal its limit {limits.get('memory')}"
    assert requests.get("cpu"), "request CPU"
    assert "cpu" not in limits, "no CPU limit: it would throttle the supervisor together with its apps"
