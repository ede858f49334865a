"""deploy/kubernetes, checked without a Kubernetes cluster (make test-deploy): every manifest
validated strictly against Kubernetes' schemas, and every place where the manifests and the
code must agree compared — the configuration given to the built `aerogrid serve` and to the
key lists of ServerConfiguration.swift, the ports with its listeners, the probes with its
routes, the Services, the disruption budget and the kustomization with the folder.

Each check is also run on a copy of the folder broken in the way it guards against, and
must fail there: a check that cannot fail checks nothing.
"""

from __future__ import annotations

import pytest

from deploy_checks import (
    KUBERNETES_VERSIONS,
    check_config_keys,
    check_config_with_binary,
    check_data_dir,
    check_disruption_budget,
    check_kustomization,
    check_node_identity,
    check_operator_token,
    check_peer_service,
    check_ports,
    check_probe_paths,
    check_resources,
    check_schemas,
    check_security_context,
    check_services,
)


def test_kustomization_lists_every_manifest(manifests):
    check_kustomization(manifests)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_strictly(manifests, kubernetes_validate, version):
    check_schemas(manifests, version)


def test_statefulset_service_is_the_headless_one(manifests):
    check_peer_service(manifests)


def test_services_target_named_container_ports(manifests):
    check_services(manifests)


def test_disruption_budget_selects_the_pods(manifests):
    check_disruption_budget(manifests)


def test_container_ports_are_the_listeners(manifests):
    check_ports(manifests)


def test_probe_paths_are_routes(manifests):
    check_probe_paths(manifests)


def test_config_keys_are_the_servers(manifests):
    check_config_keys(manifests)


def test_aerogrid_serve_takes_the_config(manifests, aerogrid, tmp_path):
    check_config_with_binary(manifests, aerogrid, tmp_path)


def test_node_id_and_advertised_url_are_the_pods(manifests):
    check_node_identity(manifests)


def test_data_dir_is_the_claimed_volume(manifests):
    check_data_dir(manifests)


def test_operator_token_comes_from_a_secret(manifests):
    check_operator_token(manifests)


def test_security_context_is_the_argued_one(manifests):
    check_security_context(manifests)


def test_resources_are_the_argued_ones(manifests):
    check_resources(manifests)


# ---- each check, on a copy broken the way it guards against


def statefulset(m):
    return m.statefulset


def container(m):
    return m.container


def service(m, name):
    return m.one("Service", name)["spec"]


def edit_config(old: str, new: str):
    """A change of the ConfigMap's aerogrid.toml."""

    def change(m):
        data = m.one("ConfigMap")["data"]
        assert old in data["aerogrid.toml"], f"{old!r} is not in aerogrid.toml: update this test"
        data["aerogrid.toml"] = data["aerogrid.toml"].replace(old, new, 1)

    return change


def edit_kafka_secret(old: str, new: str):
    def change(m):
        data = m.one("Secret", "aerogrid-kafka")["stringData"]
        assert old in data["kafka.toml"], f"{old!r} is not in kafka.toml: update this test"
        data["kafka.toml"] = data["kafka.toml"].replace(old, new, 1)

    return change


def probe(m, kind):
    return m.container[kind]["httpGet"]


def env_field(name, path):
    def change(m):
        entry = next(e for e in m.container["env"] if e["name"] == name)
        entry["valueFrom"]["fieldRef"]["fieldPath"] = path

    return change


def rename_secret_key(m):
    data = m.one("Secret", "aerogrid-kafka")["stringData"]
    data["kafka.conf"] = data.pop("kafka.toml")


def serve(m, request, tmp_path):
    check_config_with_binary(m, request.getfixturevalue("aerogrid"), tmp_path)


def schemas(m, request, tmp_path):
    request.getfixturevalue("kubernetes_validate")
    check_schemas(m, KUBERNETES_VERSIONS[0])


def plain(check):
    return lambda m, request, tmp_path: check(m)


BROKEN = {
    "kustomization misses a manifest":
        (lambda m: m.kustomization["resources"].remove("service.yaml"), plain(check_kustomization)),
    "kustomization lists a file that is not there":
        (lambda m: m.kustomization["resources"].append("ingress.yaml"), plain(check_kustomization)),
    "kustomization does not set the image":
        (lambda m: m.kustomization["images"][0].update(name="aerogrid-server"), plain(check_kustomization)),
    "a field Kubernetes does not know":
        (lambda m: container(m)["securityContext"].update(privilegd=False), schemas),
    "an apiVersion Kubernetes does not have":
        (lambda m: statefulset(m).update(apiVersion="apps/v2"), schemas),
    "serviceName is no Service":
        (lambda m: statefulset(m)["spec"].update(serviceName="aerogrid-nodes"), plain(check_peer_service)),
    "the peer Service is not headless":
        (lambda m: service(m, "aerogrid-peers").pop("clusterIP"), plain(check_peer_service)),
    "the peer Service hides pods that are not ready":
        (lambda m: service(m, "aerogrid-peers").update(publishNotReadyAddresses=False), plain(check_peer_service)),
    "a targetPort no container port is named":
        (lambda m: service(m, "aerogrid")["ports"][0].update(targetPort="web"), plain(check_services)),
    "a targetPort by number":
        (lambda m: service(m, "aerogrid")["ports"][0].update(targetPort=8080), plain(check_services)),
    "a Service selecting other pods":
        (lambda m: service(m, "aerogrid")["selector"].update({"app.kubernetes.io/component": "web"}),
         plain(check_services)),
    "a disruption budget selecting other pods":
        (lambda m: m.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/name": "other"}), plain(check_disruption_budget)),
    "a container port that is not listen's":
        (lambda m: container(m)["ports"][0].update(containerPort=8081), plain(check_ports)),
    "listen on another port than the container's":
        (edit_config('listen = "0.0.0.0:8080"', 'listen = "0.0.0.0:9090"'), plain(check_ports)),
    "a probe in HTTPS on plain HTTP":
        (lambda m: probe(m, "readinessProbe").update(scheme="HTTPS"), plain(check_ports)),
    "a probe path that is no route":
        (lambda m: probe(m, "livenessProbe").update(path="/health"), plain(check_probe_paths)),
    "readiness asking /healthz":
        (lambda m: probe(m, "readinessProbe").update(path="/healthz"), plain(check_probe_paths)),
    "an unknown top-level key (parser's lists)":
        (edit_config("listen =", 'listen_on = "0.0.0.0:1"\nlisten ='), plain(check_config_keys)),
    "an unknown top-level key (aerogrid serve)":
        (edit_config("listen =", 'listen_on = "0.0.0.0:1"\nlisten ='), serve),
    "runs_apps, which is gone (parser's lists)":
        (edit_config('name = "prod"', 'name = "prod"\nruns_apps = true'), plain(check_config_keys)),
    "runs_apps, which is gone (aerogrid serve)":
        (edit_config('name = "prod"', 'name = "prod"\nruns_apps = true'), serve),
    "an unknown [sandbox] key, which aerogrid serve ignores (parser's lists)":
        (edit_config("host_uids =", 'host_uid = "1000-2000"\nhost_uids ='), plain(check_config_keys)),
    "a Kafka property name left unquoted (parser's lists)":
        (edit_kafka_secret('"sasl.username"', "sasl.username"), plain(check_config_keys)),
    "a Kafka property name left unquoted (aerogrid serve)":
        (edit_kafka_secret('"sasl.username"', "sasl.username"), serve),
    "a Kafka property value librdkafka refuses (aerogrid serve)":
        (edit_kafka_secret('"SCRAM-SHA-512"', '"SCRAM-SHA-999"'), serve),
    "a Kafka property librdkafka does not have (aerogrid serve)":
        (edit_kafka_secret('"sasl.password"', '"sasl.passwort"'), serve),
    "a duration written as a string (aerogrid serve)":
        (edit_config("session_timeout = 10", 'session_timeout = "10s"'), serve),
    "an advertised_url without its port (aerogrid serve)":
        (edit_config('.svc:8080"', '.svc"'), serve),
    "an advertised_url without its port":
        (edit_config('.svc:8080"', '.svc"'), plain(check_node_identity)),
    "a placeholder the start script does not replace":
        (edit_config('node_id = "@POD_NAME@"', 'node_id = "@POD_NAM@"'), plain(check_node_identity)),
    "POD_NAME taken from another field":
        (env_field("POD_NAME", "spec.nodeName"), plain(check_node_identity)),
    "data_dir off the claimed volume":
        (edit_config('data_dir = "/var/lib/aerogrid"', 'data_dir = "/data"'), plain(check_data_dir)),
    "the start script reading a key the Secret lacks":
        (rename_secret_key, plain(check_config_keys)),
    "an operator token the server would take":
        (lambda m: m.one("Secret", "aerogrid-operator")["stringData"].update(token="agt_" + "a" * 43),
         plain(check_operator_token)),
    "a capability more":
        (lambda m: container(m)["securityContext"]["capabilities"]["add"].append("NET_ADMIN"),
         plain(check_security_context)),
    "a privileged container":
        (lambda m: container(m)["securityContext"].update(privileged=True), plain(check_security_context)),
    "a CPU limit":
        (lambda m: container(m)["resources"]["limits"].update(cpu="2"), plain(check_resources)),
}


@pytest.mark.parametrize("case", BROKEN)
def test_check_fails_on(case, broken, request, tmp_path):
    change, check = BROKEN[case]
    copy = broken(change)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(AssertionError) as failure:
        check(copy, request, scratch)
    print(f"{case}: {failure.value}")
