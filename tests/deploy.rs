//! What `deploy/` ships is checked here, since no cluster or Docker engine
//! runs in CI: the manifests by `deploy/validate.sh` (Kubernetes schemas,
//! checkov), and the configuration files they mount by the sidecar's own loaders.

use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser as _};
use governance_sidecar::config::{Cli, Command};
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

/// Environment variables as `--flag=value` arguments of `serve`, through
/// clap's own map from variable to flag: the environment wins over the
/// config file, so the tests must see it.
fn as_flags(pairs: &[(String, String)]) -> Vec<String> {
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    pairs
        .iter()
        .filter_map(|(name, value)| {
            let arg = serve.get_arguments().find(|arg| arg.get_env().is_some_and(|env| env == name.as_str()));
            arg.map(|arg| format!("--{}={value}", arg.get_long().unwrap()))
        })
        .collect()
}

/// The `ENV` settings of deploy/Dockerfile's final image, as flags.
fn image_environment_as_flags() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let image = dockerfile.rsplit("\nFROM ").next().unwrap();
    let joined = image.replace("\\\n", " ");
    let pairs: Vec<(String, String)> = joined
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .flat_map(|settings| settings.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("ENV name=value");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    assert!(!pairs.is_empty(), "the image sets its log format at least");
    as_flags(&pairs)
}

/// The `environment:` of docker-compose.yml's `sidecar` service.
fn compose_sidecar_environment() -> Vec<(String, String)> {
    let compose = std::fs::read_to_string(deploy().join("docker-compose.yml")).unwrap();
    let service = compose.split("\n  sidecar:\n").nth(1).expect("a sidecar service");
    let environment = service.split("\n    environment:\n").nth(1).expect("its environment");
    environment
        .lines()
        .take_while(|line| line.starts_with("      "))
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.trim().split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[test]
fn the_kubernetes_sidecar_config_is_one_the_sidecar_accepts_in_the_shipped_image() {
    // The URL file is a mounted Secret in the cluster; a URL given directly wins over it.
    let mut arguments: Vec<String> = ["governance-sidecar", "serve", "--config"].map(str::to_owned).into();
    arguments.push(deploy().join("kubernetes/sidecar.toml").display().to_string());
    arguments.push("--database-url=postgresql://governance_sidecar@127.0.0.1/app".into());
    arguments.extend(image_environment_as_flags());
    let Some(Command::Serve(args)) = Cli::try_parse_from(&arguments).unwrap().command else { unreachable!() };
    let settings = args.resolve().expect("deploy/kubernetes/sidecar.toml");
    assert!(settings.listen.address.ip().is_loopback(), "Governance must stay on loopback in the pod");
    assert!(!settings.listen.insecure, "no unauthenticated listener beyond loopback");
    let probes = settings.listen.health_address.map(|a| a.port());
    assert_eq!(probes, Some(50052), "the probes in deployment.yaml dial 50052");
    assert_eq!(settings.evidence.mutations.as_deref(), Some(Path::new("/etc/governance/mutations/mutations.toml")));
    let policies = settings.policies.expect("the cluster decides with the operator's bundle");
    assert_eq!(policies.bundle, Path::new("/etc/governance/policy/policy-bundle.json"));
    assert!(!settings.allow_request_policies, "in the cluster, policies come from the operator only");
}

#[test]
fn the_image_alone_listens_on_loopback() {
    let mut arguments: Vec<String> = ["governance-sidecar", "serve"].map(str::to_owned).into();
    arguments.extend(image_environment_as_flags());
    let Some(Command::Serve(args)) = Cli::try_parse_from(&arguments).unwrap().command else { unreachable!() };
    assert!(args.resolve().unwrap().listen.address.ip().is_loopback(), "{arguments:?}");
}

#[test]
fn compose_listens_beyond_loopback_only_with_a_callers_file_and_governs_its_mutations() {
    let mut arguments: Vec<String> = ["governance-sidecar", "serve"].map(str::to_owned).into();
    arguments.extend(image_environment_as_flags());
    arguments.extend(as_flags(&compose_sidecar_environment()));
    let Some(Command::Serve(args)) = Cli::try_parse_from(&arguments).unwrap().command else { unreachable!() };
    let settings = args.resolve().unwrap();
    assert!(!settings.listen.address.ip().is_loopback(), "the app reaches it over the compose network");
    assert!(settings.callers.is_some() && !settings.listen.insecure, "{arguments:?}");
    let insecure = governance_sidecar::server::check_exposure(settings.listen.address, &settings).unwrap();
    assert!(!insecure, "authenticated by its callers file");
    let registry = Registry::load(&deploy().join("examples/invoice/mutations.toml"), None).unwrap();
    let bundle = PolicyBundle::parse(&std::fs::read(deploy().join("examples/invoice/policy-bundle.json")).unwrap());
    assert!(settings.policies.is_some());
    assert_eq!(registry.ungoverned_by(Some(&bundle.unwrap())), Vec::<&str>::new());
}

#[test]
fn the_kubernetes_database_urls_verify_the_server_against_the_ca_secret() {
    let kustomization = std::fs::read_to_string(deploy().join("kubernetes/kustomization.yaml")).unwrap();
    let urls: Vec<&str> = kustomization.lines().filter_map(|line| line.trim().strip_prefix("- url=")).collect();
    assert_eq!(urls.len(), 2, "the sidecar's and the owner's");
    for url in urls {
        assert!(url.contains("sslmode=verify-full") && url.contains("sslrootcert=/etc/governance/database-ca/ca.crt"));
    }
    for manifest in ["deployment.yaml", "migration-job.yaml", "maintain-cronjob.yaml"] {
        let text = std::fs::read_to_string(deploy().join("kubernetes").join(manifest)).unwrap();
        assert!(text.contains("mountPath: /etc/governance/database-ca"), "{manifest} mounts no database CA");
        assert!(text.contains("secretName: governance-database-ca"), "{manifest} mounts no database CA");
    }
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

/// The `args:` of the sidecar in deploy/gateway/istio/sidecar-gateway.yaml.
fn istio_overlay_sidecar_args() -> Vec<String> {
    let patch = std::fs::read_to_string(deploy().join("gateway/istio/sidecar-gateway.yaml")).unwrap();
    let args = patch.split("\n          args:\n").nth(1).expect("the sidecar's args");
    args.lines().map_while(|line| line.strip_prefix("            - ")).map(str::to_owned).collect()
}

#[test]
fn the_istio_overlay_turns_the_gateway_on_with_the_mounted_bundles_routes() {
    let args = istio_overlay_sidecar_args();
    assert_eq!(args[..3], ["serve", "--config", "/etc/governance/config/sidecar.toml"], "the base's args first");
    let mut arguments: Vec<String> = vec!["governance-sidecar".into()];
    arguments.extend(args.into_iter().map(|arg| {
        // The mounted files, as they are in this repository.
        arg.replace("/etc/governance/config/", &deploy().join("kubernetes/").display().to_string())
    }));
    arguments.push("--database-url=postgresql://governance_sidecar@127.0.0.1/app".into());
    arguments.extend(image_environment_as_flags());
    let Some(Command::Serve(args)) = Cli::try_parse_from(&arguments).unwrap().command else { unreachable!() };
    let settings = args.resolve().expect("the overlay's sidecar flags");
    assert!(settings.listen.address.ip().is_loopback(), "istio-proxy reaches the sidecar on loopback");
    assert_eq!(settings.listen.address.port(), 50051, "mesh-config.yaml and service-entry.yaml name 50051");
    let gateway = settings.gateway.expect("the overlay turns the gateway on");
    assert_eq!(gateway.principal, governance_sidecar::gateway::PrincipalSource::parse("xfcc").unwrap());
    // The operation map is the mounted bundle (deploy/kubernetes/policy-bundle.json).
    let map = settings.evidence.operation_map.expect("--operation-map");
    assert_eq!(map, Path::new("/etc/governance/policy/policy-bundle.json"));
    let text = std::fs::read_to_string(deploy().join("kubernetes/policy-bundle.json")).unwrap();
    let operations = governance_sidecar::policies::OperationMap::parse(&text).unwrap();
    governance_sidecar::gateway::Gateway::new(gateway, &operations).expect("a gateway over the bundle's routes");
}
