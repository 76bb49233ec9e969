//! deploy/ as shipped: every Kubernetes manifest passes kubernetes-validate's strict schema
//! check (and a broken copy is refused, so the check can fail), the manifests hold what the
//! runbook promises (hub StatefulSet with a volume, keys read-only, probes and a policy on the
//! federation and probe ports only), the compose file runs the enrolment job before a hub and
//! three agencies with no secret in its environment, and the Dockerfile's runtime image is
//! non-root. The Python is scripts/python-deps.sh's (`INTELMESH_PYTHON`). The enrolment
//! script itself runs in crates/cli/tests/deploy_enrol.rs, next to the binary.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use intelmesh_node::NodeConfig;
use intelmesh_tests::taxii::python;
use serde_json::Value;

/// The Kubernetes versions the manifests must validate against: an older release still
/// widely run, and the newest the pinned validator knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30", "1.37"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn manifests() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(deploy().join("k8s"))
        .expect("deploy/k8s exists")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    all.sort();
    assert!(all.len() >= 5, "manifests found: {all:?}");
    all
}

fn run_python(args: &[String]) -> Output {
    Command::new(python())
        .args(args)
        // Nothing here goes to the network; keep the environment's CA overrides out anyway,
        // as tests/support/taxii.rs does.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("python runs")
}

fn validate(files: &[PathBuf], version: &str) -> Output {
    let mut a: Vec<String> = [
        "-m",
        "kubernetes_validate",
        "--strict",
        "--quiet",
        "-k",
        version,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(files.iter().map(|f| f.display().to_string()));
    run_python(&a)
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The YAML documents of `files`, through PyYAML: {path: [document…]}.
fn yaml(files: &[PathBuf]) -> Value {
    let mut a = vec![Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/yaml_json.py")
        .display()
        .to_string()];
    a.extend(files.iter().map(|f| f.display().to_string()));
    let out = run_python(&a);
    assert!(out.status.success(), "reading YAML: {}", said(&out));
    serde_json::from_slice(&out.stdout).expect("yaml_json.py prints JSON")
}

#[test]
fn every_manifest_passes_the_strict_schema_check() {
    let files = manifests();
    for version in KUBERNETES_VERSIONS {
        let out = validate(&files, version);
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {version} refused a manifest: {}",
            said(&out)
        );
    }
}

#[test]
fn a_broken_manifest_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(deploy().join("k8s/hub-statefulset.yaml")).unwrap();
    let broken_text = original.replacen("  replicas: 2\n", "  replicas: two\n", 1);
    assert_ne!(broken_text, original, "the test changes the replica count");
    let broken = tmp.path().join("hub-statefulset.yaml");
    std::fs::write(&broken, broken_text).unwrap();
    let out = validate(&[broken], KUBERNETES_VERSIONS[1]);
    assert!(!out.status.success(), "accepted: {}", said(&out));
    assert!(
        said(&out).contains("spec.replicas: 'two' is not of type 'integer'"),
        "{}",
        said(&out)
    );
    // An unknown field is refused too (--strict), as a typo would be.
    let typo = tmp.path().join("typo.yaml");
    std::fs::write(
        &typo,
        original.replacen("  serviceName:", "  servicename:", 1),
    )
    .unwrap();
    let out = validate(&[typo], KUBERNETES_VERSIONS[1]);
    assert!(!out.status.success(), "accepted: {}", said(&out));
    assert!(
        said(&out).contains("'servicename' was unexpected"),
        "{}",
        said(&out)
    );
}

/// Every document of every manifest, by kind.
fn objects() -> Vec<Value> {
    let docs = yaml(&manifests());
    docs.as_object()
        .unwrap()
        .values()
        .flat_map(|d| d.as_array().unwrap().clone())
        .collect()
}

fn one<'a>(all: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = all.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn ports(list: &Value) -> BTreeSet<i64> {
    list.as_array()
        .map(|l| l.iter().filter_map(|p| p["port"].as_i64()).collect())
        .unwrap_or_default()
}

#[test]
fn the_hub_statefulset_keeps_keys_read_only_and_probes_the_metrics_port() {
    let all = objects();
    let set = one(&all, "StatefulSet");
    let spec = &set["spec"];
    assert_eq!(spec["volumeClaimTemplates"][0]["metadata"]["name"], "data");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let main = &pod["containers"][0];
    let metrics = main["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a metrics port");
    assert_eq!(metrics["containerPort"], 9464);
    assert_eq!(main["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(main["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(main[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    for r in ["cpu", "memory"] {
        assert!(main["resources"]["requests"][r].is_string(), "request {r}");
    }
    assert!(main["resources"]["limits"]["memory"].is_string());

    // The Secret reaches only the init container; the node mounts its copy read-only.
    let volumes = pod["volumes"].as_array().unwrap();
    let secret = volumes
        .iter()
        .find(|v| v["secret"].is_object())
        .expect("a Secret volume");
    let mounts = |c: &Value| -> Vec<Value> { c["volumeMounts"].as_array().unwrap().clone() };
    assert!(mounts(main).iter().all(|m| m["name"] != secret["name"]));
    let init_mount = mounts(&pod["initContainers"][0])
        .into_iter()
        .find(|m| m["name"] == secret["name"])
        .expect("the init container mounts the Secret");
    assert_eq!(init_mount["readOnly"], true);
    for m in mounts(main) {
        if m["name"] != "data" {
            assert_eq!(m["readOnly"], true, "{m}");
        }
    }

    // The configs name files where the pod mounts them, and the probe port.
    let config = one(&all, "ConfigMap");
    let mount_of = |name: &str| {
        mounts(main)
            .into_iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["mountPath"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("{name} is mounted"))
    };
    let (keys, data) = (mount_of("keys"), mount_of("data"));
    let replicas = spec["replicas"].as_u64().unwrap();
    for i in 0..replicas {
        let text = config["data"][format!("intelmesh-hub-{i}.toml")]
            .as_str()
            .unwrap_or_else(|| panic!("a config for pod {i}"));
        let cfg: toml::Table = toml::from_str(text).unwrap();
        assert_eq!(cfg["metrics"]["listen"].as_str(), Some("0.0.0.0:9464"));
        assert!(cfg["api"]["listen"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
        assert!(cfg["data_dir"].as_str().unwrap().starts_with(&data));
        for file in [
            &cfg["signing_key"],
            &cfg["federation"]["key"],
            &cfg["api"]["key"],
        ] {
            assert!(file.as_str().unwrap().starts_with(&keys), "{file}");
        }
    }
}

/// The ConfigMap's hub configs as the node's own loader reads them, the genesis pin the
/// operators fill in given.
#[test]
fn the_hub_configs_load_as_node_configs() {
    let all = objects();
    let config = one(&all, "ConfigMap");
    let data = config["data"].as_object().unwrap();
    assert_eq!(data.len(), 2, "one config per hub");
    for (name, text) in data {
        let mut cfg: toml::Table = toml::from_str(text.as_str().unwrap()).unwrap();
        let roster = cfg["roster"].as_table_mut().unwrap();
        assert_eq!(
            roster["genesis_hash"].as_str(),
            Some("REPLACE-WITH-THE-GENESIS-PIN")
        );
        roster.insert("genesis_hash".into(), "ab".repeat(32).into());
        let text = toml::to_string(&cfg).unwrap();
        let node = NodeConfig::from_text(&text, Path::new("/etc/intelmesh/config/node.toml"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(node.roster.is_some(), "{name} is in roster mode");
        let probes = node.metrics.map(|m| m.listen.to_string());
        assert_eq!(probes.as_deref(), Some("0.0.0.0:9464"), "{name}");
    }
}

/// The init container's key copy, run with sh against temp directories in place of the
/// Secret and the in-memory volume: this pod's files only, renamed, 0600; none is an error.
#[test]
fn the_init_container_installs_only_its_pods_keys_privately() {
    let all = objects();
    let set = one(&all, "StatefulSet");
    let init = &set["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["command"], serde_json::json!(["/bin/sh", "-c"]));
    let script = init["args"][0].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (secret, keys) = (tmp.path().join("secret"), tmp.path().join("keys"));
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::create_dir_all(&keys).unwrap();
    for (file, text) in [
        ("intelmesh-hub-0.node.key", "hub 0 key"),
        ("intelmesh-hub-0.genesis.roster", "genesis"),
        ("intelmesh-hub-1.node.key", "hub 1 key"),
    ] {
        std::fs::write(secret.join(file), text).unwrap();
        // As kubelet leaves them with fsGroup: group-readable.
        std::fs::set_permissions(secret.join(file), std::fs::Permissions::from_mode(0o440))
            .unwrap();
    }
    let local = script
        .replace("/secret/", &format!("{}/", secret.display()))
        .replace("/keys/", &format!("{}/", keys.display()));
    assert_ne!(local, script, "the script names /secret/ and /keys/");
    let run = |pod: &str| {
        Command::new("sh")
            .args(["-c", &local])
            .env("POD_NAME", pod)
            .output()
            .expect("sh runs")
    };
    let out = run("intelmesh-hub-0");
    assert!(out.status.success(), "{}", said(&out));
    let mut installed: Vec<String> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    installed.sort();
    assert_eq!(installed, ["genesis.roster", "node.key"]);
    assert_eq!(
        std::fs::read_to_string(keys.join("node.key")).unwrap(),
        "hub 0 key"
    );
    for f in &installed {
        let mode = std::fs::metadata(keys.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let none = run("intelmesh-hub-7");
    assert!(!none.status.success());
    assert!(
        said(&none).contains("no file intelmesh-hub-7.*"),
        "{}",
        said(&none)
    );
}

#[test]
fn only_the_federation_and_probe_ports_are_open() {
    let all = objects();
    let policy = one(&all, "NetworkPolicy");
    let open: BTreeSet<i64> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| ports(&rule["ports"]))
        .collect();
    assert_eq!(open, BTreeSet::from([7700, 9464]));
    for service in all.iter().filter(|o| o["kind"] == "Service") {
        assert!(
            !ports(&service["spec"]["ports"]).contains(&7701),
            "the API port is exposed: {service}"
        );
    }
    let pdb = one(&all, "PodDisruptionBudget");
    let set = one(&all, "StatefulSet");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        set["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn compose_enrols_first_then_runs_a_hub_and_three_agencies() {
    let path = deploy().join("compose.yaml");
    let docs = yaml(std::slice::from_ref(&path));
    let compose = &docs[path.display().to_string()][0];
    let services = compose["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    let nodes = ["hub", "agency-1", "agency-2", "agency-3"];
    let mut expected = BTreeSet::from(nodes);
    expected.insert("init");
    assert_eq!(names, expected);

    let init = &services["init"];
    assert_eq!(init["build"]["target"], "tools");
    let specs: Vec<&str> = init["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let agency_dirs: BTreeSet<&str> = specs.iter().map(|s| s.split(',').next().unwrap()).collect();
    assert_eq!(
        agency_dirs,
        BTreeSet::from(["agency-1", "agency-2", "agency-3"])
    );
    let init_volumes: BTreeSet<&str> = init["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(init_volumes.contains("operators:/intelmesh/operators"));

    for node in nodes {
        let s = &services[node];
        assert_eq!(
            s["depends_on"]["init"]["condition"], "service_completed_successfully",
            "{node}"
        );
        assert_eq!(s["build"]["target"], "runtime", "{node}");
        assert_eq!(s["user"], "65532:65532", "{node}");
        // Its own volume only, where the enrolment wrote it.
        let volume = format!("{node}:/intelmesh/{node}");
        assert_eq!(s["volumes"], serde_json::json!([volume]), "{node}");
        assert!(
            init_volumes.contains(volume.as_str()),
            "init writes {node}'s volume"
        );
        let command: Vec<&str> = s["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(&command[..2], ["run", "--config"], "{node}");
        assert!(
            command[2].starts_with(&format!("/intelmesh/{node}/")),
            "{node}"
        );
    }
    for v in init_volumes {
        let name = v.split(':').next().unwrap();
        assert!(
            compose["volumes"].get(name).is_some(),
            "volume {name} is declared"
        );
    }

    // Nothing secret in any environment: keys stay in the volumes.
    let secretish = [
        "KEY",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "CREDENTIAL",
        "PRIVATE",
    ];
    for (name, s) in services {
        let Some(env) = s["environment"].as_object() else {
            continue;
        };
        for (k, v) in env {
            let text = format!("{k}={v}").to_uppercase();
            assert!(
                secretish.iter().all(|w| !text.contains(w)),
                "{name} has a secret-looking environment variable: {k}"
            );
        }
    }
}

#[test]
fn the_runtime_image_is_multi_stage_and_non_root() {
    let text = std::fs::read_to_string(deploy().join("../Dockerfile")).unwrap();
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    assert!(stages.len() >= 2, "multi-stage");
    let runtime = stages.last().unwrap();
    assert!(
        runtime.contains(" AS runtime"),
        "the last stage is the runtime"
    );
    assert!(runtime.contains("\nUSER 65532:65532\n"), "{runtime}");
    let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY")).collect();
    assert!(
        copies
            .iter()
            .all(|l| l.contains("/out/intelmesh") || l.contains("/layout/")),
        "the runtime takes the binary and its empty directories only: {copies:?}"
    );
    let ignore = std::fs::read_to_string(deploy().join("../.dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "target stays out of the context"
    );
}
