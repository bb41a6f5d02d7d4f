//! What `deploy/` ships is checked here, since no cluster or Docker engine
//! runs in CI: the manifests by `deploy/validate.sh` (Kubernetes schemas,
//! checkov), and the configuration files they mount by the sidecar's own loaders.

use std::path::{Path, PathBuf};

use governance_sidecar::config::{DatabaseArgs, ServeArgs};
use governance_sidecar::mutations::Registry;
use governance_sidecar::policies::PolicyBundle;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas_and_checkov_finds_nothing() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let output = std::process::Command::new("bash")
        .arg(deploy().join("validate.sh"))
        .arg(target.join("deploy-validate"))
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "deploy/validate.sh failed:\n{printed}");
    println!("{printed}");
    assert!(printed.contains("valid against the Kubernetes 1.29 schemas"), "{printed}");
    assert!(printed.contains("checkov: no findings"), "{printed}");
}

#[test]
fn the_kubernetes_sidecar_config_is_one_the_sidecar_accepts() {
    // The URL file is a mounted Secret in the cluster; a URL given directly wins over it.
    let args = ServeArgs {
        config: Some(deploy().join("kubernetes/sidecar.toml")),
        database: DatabaseArgs {
            database_url: Some("postgresql://governance_sidecar@127.0.0.1/app".into()),
            ..DatabaseArgs::default()
        },
        ..ServeArgs::default()
    };
    let settings = args.resolve().expect("deploy/kubernetes/sidecar.toml");
    assert!(settings.listen.address.ip().is_loopback(), "Governance must stay on loopback in the pod");
    let probes = settings.listen.health_address.map(|a| a.port());
    assert_eq!(probes, Some(50052), "the probes in deployment.yaml dial 50052");
    assert_eq!(settings.evidence.mutations.as_deref(), Some(Path::new("/etc/governance/mutations/mutations.toml")));
    let policies = settings.policies.expect("the cluster decides with the operator's bundle");
    assert_eq!(policies.bundle, Path::new("/etc/governance/policy/policy-bundle.json"));
    assert!(!policies.allow_request_policies, "in the cluster, policies come from the operator only");
}

#[test]
fn the_kubernetes_policy_bundle_is_the_invoice_examples_dev_serves() {
    // kustomize may not read files outside its directory, so the bundle is a copy.
    let copy = std::fs::read_to_string(deploy().join("kubernetes/policy-bundle.json")).unwrap();
    let example = std::fs::read_to_string(deploy().join("examples/invoice/policy-bundle.json")).unwrap();
    assert_eq!(copy, example, "deploy/kubernetes/policy-bundle.json drifted from the invoice example");
}

#[test]
fn the_kubernetes_policy_bundle_loads_and_governs_invoice_creation() {
    let bytes = std::fs::read(deploy().join("kubernetes/policy-bundle.json")).unwrap();
    let bundle = PolicyBundle::parse(&bytes).expect("deploy/kubernetes/policy-bundle.json");
    let scope = bundle.resolve("invoice", "create");
    assert_eq!(scope.context.governed, Some(true));
    assert_eq!(scope.context.selected_policies.as_ref().map(Vec::len), Some(1));
}

#[test]
fn the_kubernetes_mutation_registry_is_the_invoice_example() {
    // kustomize may not read files outside its directory, so the registry is a copy.
    let copy = std::fs::read_to_string(deploy().join("kubernetes/mutations.toml")).unwrap();
    let example = std::fs::read_to_string(deploy().join("examples/invoice/mutations.toml")).unwrap();
    assert_eq!(copy, example, "deploy/kubernetes/mutations.toml drifted from the invoice example");
    assert!(Registry::parse(&copy).unwrap().get("create_invoice").is_some());
}
