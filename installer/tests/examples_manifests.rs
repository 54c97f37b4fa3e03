//! The Kubernetes manifests of `examples/` (every `examples/*/*.yaml`), checked offline as the
//! runtimeclass ones are: `kubernetes-validate --strict` against Kubernetes 1.29 and the
//! newest version it ships, then what a warden example must be: `runtimeClassName: warden`,
//! namespace `warden-example`, its own example image, and a `warden.dev/profile` annotation
//! naming a profile that the example's `policy.toml` (loaded with warden's own parser) lets
//! that namespace use. The tools come from `make deps` (the venv at `WARDEN_TOOLS_DIR`); without
//! them these tests fail, they never skip.

mod k8s_support;

use std::path::PathBuf;

use k8s_support::{newest_kubernetes_version, parse_documents, repo_root, validate};
use serde_json::Value;
use warden_policy::{Policy, STRICT_PROFILE};

const NAMESPACE: &str = "warden-example";

/// Each example's directory and its manifests, sorted.
fn examples() -> Vec<(String, Vec<PathBuf>)> {
    let dir = repo_root().join("examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        if !path.is_dir() || !path.join("policy.toml").is_file() {
            continue;
        }
        let mut yamls: Vec<PathBuf> = std::fs::read_dir(&path)
            .expect("example dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        yamls.sort();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        out.push((name, yamls));
    }
    out.sort();
    out
}

/// The pod templates of a manifest's documents: a Pod's spec and metadata, a Deployment's
/// template's.
fn pods(docs: &[Value]) -> Vec<(&Value, &Value)> {
    docs.iter()
        .filter_map(|d| match d["kind"].as_str() {
            Some("Pod") => Some((&d["metadata"], &d["spec"])),
            Some("Deployment") => Some((
                &d["spec"]["template"]["metadata"],
                &d["spec"]["template"]["spec"],
            )),
            _ => None,
        })
        .collect()
}

/// What is wrong with example `name`'s manifest `docs`, given its policy.
fn problems(name: &str, docs: &[Value], policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for doc in docs {
        if doc["metadata"]["namespace"] != NAMESPACE {
            out.push(format!(
                "{} {} is not in namespace {NAMESPACE}",
                doc["kind"], doc["metadata"]["name"]
            ));
        }
    }
    let pods = pods(docs);
    if pods.is_empty() {
        out.push("no Pod or Deployment".to_owned());
    }
    let want_image = format!("docker.io/library/warden-example-{name}:0.1.0");
    for (metadata, spec) in pods {
        if spec["runtimeClassName"] != "warden" {
            out.push(format!(
                "runtimeClassName is {}, not warden",
                spec["runtimeClassName"]
            ));
        }
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        if containers.len() != 1 || containers[0]["image"] != want_image.as_str() {
            out.push(format!("want one container of image {want_image}"));
        }
        match metadata["annotations"]["warden.dev/profile"].as_str() {
            None => out.push("no warden.dev/profile annotation".to_owned()),
            Some(profile) => {
                if profile != STRICT_PROFILE && policy.profile(profile).is_none() {
                    out.push(format!("profile {profile} is not in policy.toml"));
                }
                if let Err(d) = policy.effective(NAMESPACE, Some(profile)) {
                    out.push(format!("{NAMESPACE} may not use profile {profile}: {d:?}"));
                }
            }
        }
    }
    out
}

fn load_policy(name: &str) -> Policy {
    let path = repo_root().join("examples").join(name).join("policy.toml");
    Policy::load(&path).unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()))
}

#[test]
fn every_example_has_its_files_and_a_policy_that_loads() {
    let examples = examples();
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "c-cli",
            "go-cli",
            "hello",
            "js-http",
            "python",
            "rust-cli",
            "rust-component",
            "rust-http",
            "wagi",
            "wat"
        ]
    );
    for (name, yamls) in &examples {
        let dir = repo_root().join("examples").join(name);
        assert!(dir.join("README.md").is_file(), "{name} has no README.md");
        assert!(!yamls.is_empty(), "{name} has no manifest");
        let policy = load_policy(name);
        // The profile named after the example, or none for the two that need no grant.
        let profiles: Vec<&str> = policy.profiles().map(|(p, _)| p).collect();
        match name.as_str() {
            "hello" | "wat" => assert!(profiles.is_empty(), "{name}: {profiles:?}"),
            _ => assert_eq!(profiles, [name.as_str()], "{name}"),
        }
        for (_, profile) in policy.profiles() {
            assert!(
                profile.allows_namespace(NAMESPACE),
                "{name}: {NAMESPACE} may not use it"
            );
            assert!(
                !profile.allows_namespace("default"),
                "{name}: the profile is open to every namespace"
            );
        }
    }
}

#[test]
fn every_example_manifest_validates_and_asks_for_its_profile() {
    let newest = newest_kubernetes_version();
    let mut failures = String::new();
    for (name, yamls) in examples() {
        let policy = load_policy(&name);
        for yaml_path in yamls {
            let yaml = std::fs::read_to_string(&yaml_path).expect("read manifest");
            let docs = parse_documents(&yaml);
            for version in ["1.29.0", newest.as_str()] {
                let v = validate(&yaml, version);
                let problems: Vec<&String> =
                    v.errors.iter().chain(&v.warnings).chain(&v.other).collect();
                if !problems.is_empty() || v.passed.len() != docs.len() {
                    failures.push_str(&format!(
                        "{} against {version}: {problems:?}, passed {:?} of {} documents\n",
                        yaml_path.display(),
                        v.passed,
                        docs.len()
                    ));
                }
            }
            for p in problems(&name, &docs, &policy) {
                failures.push_str(&format!("{}: {p}\n", yaml_path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// The checks catch what they are for: a manifest that asks for another runtime, another
/// image, or a profile its policy does not define.
#[test]
fn a_broken_example_manifest_fails_the_checks() {
    let yaml = std::fs::read_to_string(repo_root().join("examples/rust-cli/pod.yaml"))
        .expect("rust-cli pod");
    let policy = load_policy("rust-cli");
    assert!(problems("rust-cli", &parse_documents(&yaml), &policy).is_empty());
    let broken = [
        (
            "runtimeClassName: warden",
            "runtimeClassName: runc",
            "runtimeClassName",
        ),
        (
            "warden.dev/profile: rust-cli",
            "warden.dev/profile: payments",
            "profile payments",
        ),
        (
            "warden-example-rust-cli:0.1.0",
            "warden-example-c-cli:0.1.0",
            "image",
        ),
        (
            "namespace: warden-example",
            "namespace: default",
            "namespace",
        ),
    ];
    for (from, to, what) in broken {
        let docs = parse_documents(&yaml.replace(from, to));
        let found = problems("rust-cli", &docs, &policy);
        assert!(found.iter().any(|p| p.contains(what)), "{to}: {found:?}");
    }
    // Strict kubernetes validation refuses an unknown field.
    let v = validate(
        &yaml.replace(
            "restartPolicy: Never",
            "restartPolicy: Never\n  restartPolicyy: Never",
        ),
        "1.29.0",
    );
    assert!(!v.errors.is_empty(), "{v:?}");
}
