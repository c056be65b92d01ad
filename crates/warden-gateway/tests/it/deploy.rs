//! The deployment assets hold their hardening: the Dockerfile, the Kubernetes manifests (and
//! the configuration they ship, checked by `warden check`), the systemd unit, and the
//! shell-free health probe the container image uses. No container runtime runs here, so the
//! files are parsed and their security fields checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

#[test]
fn the_image_runs_as_a_numeric_non_root_user_without_a_shell() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    assert!(stages.len() >= 3, "a multi-stage build");
    let runtime = stages.last().expect("the runtime stage");
    assert!(runtime.starts_with("gcr.io/distroless/"), "{runtime}");
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("a numeric user");
    assert_ne!(uid, 0);
    // Nothing is run in the runtime stage, and every command is in exec form (no shell).
    assert!(!runtime.lines().any(|l| l.starts_with("RUN ")), "{runtime}");
    for instruction in ["ENTRYPOINT [", "CMD [\"serve\""] {
        assert!(runtime.contains(instruction), "{instruction}");
    }
    let healthcheck = runtime.split("HEALTHCHECK").nth(1).expect("HEALTHCHECK");
    assert!(
        healthcheck.contains("CMD [\"/usr/local/bin/warden\", \"health\""),
        "{healthcheck}"
    );
}

#[test]
fn the_kubernetes_deployment_is_locked_down() {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "{kind}.{resource}"
            );
        }
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
    // Configuration from a ConfigMap, secrets from a Secret as read-only files.
    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    assert_eq!(volume("config")["configMap"]["name"], "warden-config");
    assert_eq!(volume("secrets")["secret"]["secretName"], "warden-secrets");
    let mounts = container["volumeMounts"].as_array().expect("mounts");
    let secret_mount = mounts
        .iter()
        .find(|m| m["name"] == "secrets")
        .expect("secret mount");
    assert_eq!(secret_mount["readOnly"], true);

    assert_eq!(
        yaml("deploy/kubernetes/pdb.yaml")["kind"],
        "PodDisruptionBudget"
    );
    let policy = yaml("deploy/kubernetes/networkpolicy.yaml");
    assert_eq!(policy["kind"], "NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    // Every file the kustomizations name exists and parses.
    for dir in ["deploy/kubernetes", "deploy/kubernetes/redis"] {
        let kustomization = yaml(&format!("{dir}/kustomization.yaml"));
        let listed = kustomization["resources"].as_array().expect("resources");
        for resource in listed
            .iter()
            .filter_map(Value::as_str)
            .filter(|r| *r != "..")
        {
            yaml(&format!("{dir}/{resource}"));
        }
    }
    let redis = yaml("deploy/kubernetes/redis/redis.yaml");
    assert_eq!(
        redis["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
}

#[test]
fn the_shipped_configuration_passes_warden_check() {
    let configmap = yaml("deploy/kubernetes/configmap.yaml");
    let text = configmap["data"]["warden.yaml"]
        .as_str()
        .expect("warden.yaml");
    // The Secret and the data volume, as the pod would have them.
    let dir = crate::common::temp_dir("deploy-config");
    let key = dir.join("audit-signing-key.pem");
    let keygen = warden()
        .args(["audit", "keygen", "--out"])
        .arg(&key)
        .output()
        .expect("keygen");
    assert!(keygen.status.success());
    let text = text
        .replace("/run/secrets/warden/", &format!("{}/", dir.display()))
        .replace("/var/lib/warden/", &format!("{}/", dir.display()));
    let file = dir.join("warden.yaml");
    std::fs::write(&file, text).expect("write");
    let checked = warden().arg("check").arg(&file).output().expect("check");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn the_systemd_unit_is_sandboxed() {
    let unit = read("deploy/systemd/warden.service");
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for required in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "User=warden",
        "RestrictSUIDSGID=yes",
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(settings.contains(&required), "missing {required}");
    }
    assert!(
        settings
            .iter()
            .any(|l| l.starts_with("ExecStart=/usr/local/bin/warden serve"))
    );
}

#[tokio::test]
async fn the_health_probe_exits_zero_only_for_a_healthy_gateway() {
    let gw = crate::common::spawn(crate::common::BASIC).await;
    let probe = |url: String| {
        tokio::task::spawn_blocking(move || {
            warden()
                .args(["health", "--url", &url])
                .output()
                .expect("health")
        })
    };
    let healthy = probe(gw.admin_url("/healthz")).await.expect("join");
    assert!(healthy.status.success(), "{healthy:?}");
    let missing = probe(gw.admin_url("/nothing-here")).await.expect("join");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    let dead = probe(format!("http://{}/healthz", crate::common::dead_addr()))
        .await
        .expect("join");
    assert_eq!(dead.status.code(), Some(1));
    let https = probe("https://127.0.0.1:1/healthz".to_owned())
        .await
        .expect("join");
    assert_eq!(https.status.code(), Some(1));
}
