//! The policy file form from `docs/policy.md`, and every kind of error it can hold.

use std::time::Duration;

use warden_policy::{Access, MountGrant, Policy, PolicyError, STRICT_PROFILE};

/// The example of the design contract (`docs/policy.md`), verbatim except for a full digest
/// and without the keys added since.
const DESIGN_EXAMPLE: &str = r#"# /etc/warden/policy.toml
version = 1

[namespaces.payments]            # Kubernetes namespace; for `ctr`, the containerd namespace
default = "payments-api"         # profile for pods that name none (else the built-in "strict")

[profiles.payments-api]
namespaces = ["payments"]        # who may use it; "*" for every namespace
env = ["LOG_LEVEL", "APP_*"]     # container env vars passed through (names or globs)
mounts = [                       # container paths preopened for the module, same guest path
  { path = "/config" },          # read-only unless access = "rw"
  { path = "/data", access = "rw" },
]
modules = ["sha256:4b1c000000000000000000000000000000000000000000000000000000000000"]
native = false                   # non-Wasm containers under this runtime (pod sandbox aside)

[profiles.payments-api.network]  # wasi:sockets
connect = ["10.0.0.0/8:5432", "127.0.0.1:8080-8089"]
listen = ["0.0.0.0:8080"]
dns = false                      # name lookup

[profiles.payments-api.http]     # outgoing wasi:http
outbound = ["https://api.example.com", "http://127.0.0.1:9000"]

[profiles.payments-api.limits]
memory = "64Mi"                  # linear memory + tables, enforced in the runtime
cpu_time = "2s"                  # or deadline = "30s" (wall clock); epoch interruption
"#;

#[test]
fn design_example_parses() {
    let p = Policy::parse(DESIGN_EXAMPLE, "/etc/warden/policy.toml").unwrap();
    assert_eq!(p.namespace_default("payments"), "payments-api");
    assert_eq!(p.namespace_default("other"), STRICT_PROFILE);
    let prof = p.profile("payments-api").unwrap();
    assert_eq!(prof.namespaces, ["payments"]);
    assert_eq!(prof.env, ["LOG_LEVEL", "APP_*"]);
    assert_eq!(
        prof.mounts,
        [
            MountGrant::new("/config", Access::Ro),
            MountGrant::new("/data", Access::Rw),
        ]
    );
    assert_eq!(prof.modules.as_ref().map(Vec::len), Some(1));
    assert!(!prof.native);
    assert_eq!(prof.network.connect.len(), 2);
    assert_eq!(prof.network.connect[1].ports, (8080, 8089));
    assert_eq!(prof.network.listen[0].to_string(), "0.0.0.0:8080");
    assert!(!prof.network.dns);
    let outbound: Vec<String> = prof.http.outbound.iter().map(ToString::to_string).collect();
    assert_eq!(
        outbound,
        ["https://api.example.com", "http://127.0.0.1:9000"]
    );
    assert!(prof.http.wagi);
    assert_eq!(prof.limits.memory, Some(64 << 20));
    assert_eq!(prof.limits.cpu_time, Some(Duration::from_secs(2)));
    assert_eq!(prof.limits.deadline, None);
}

/// The policy in the ```toml block of a Markdown file of the repository, parsed, with its
/// elided digest (`placeholder`) written out in full.
fn documented_policy(relative: &str, placeholder: &str) -> Policy {
    // Read at run time: `cargo test` sets it for the test process, and a test binary reused
    // from a checkout at another path (a shared target directory) must not read that path.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path = dir.join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let start = text.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = text[start..].find("```").expect("the block's end");
    let block = text[start..start + len].replace(
        placeholder,
        "sha256:4b1c000000000000000000000000000000000000000000000000000000000000",
    );
    Policy::parse(&block, relative).unwrap()
}

#[test]
fn the_policy_in_design_md_parses_as_it_says() {
    let p = documented_policy("../DESIGN.md", "sha256:...");
    assert_eq!(p.namespace_default("payments"), "payments-api");
    assert_eq!(p.namespace_default("other"), STRICT_PROFILE);
    let prof = p.profile("payments-api").unwrap();
    assert_eq!(prof.env, ["LOG_LEVEL", "APP_*"]);
    assert_eq!(prof.mounts[0], MountGrant::new("/config", Access::Ro));
    assert_eq!(prof.mounts[1], MountGrant::new("/data", Access::Rw));
    assert_eq!(prof.mounts[2].describe(), "/srv/site->/:ro");
    assert_eq!(prof.network.connect[0].to_string(), "10.0.0.0/8:5432");
    assert!(prof.http.wagi);
    assert_eq!(prof.limits.memory, Some(64 << 20));
    assert_eq!(prof.limits.cpu_time, Some(Duration::from_secs(2)));
    assert_eq!(prof.limits.fuel, Some(1_000_000));
    assert_eq!(prof.limits.request_deadline, Some(Duration::from_secs(10)));
}

#[test]
fn the_policy_in_docs_policy_md_parses() {
    let p = documented_policy("../docs/policy.md", "sha256:4b1c...");
    let prof = p.profile("payments-api").unwrap();
    assert_eq!(prof.mounts.len(), 3);
    assert_eq!(prof.limits.fuel, Some(1_000_000));
}

#[test]
fn extensions_parse() {
    let text = r#"
version = 1
[profiles.all]
namespaces = ["*"]
mounts = ["/config", { path = "/data/", access = "ro" }, { path = "/srv/site", guest = "/" }]
native = true
[profiles.all.network]
connect = ["[fd00::/8]:443", "[::1]:*", "192.168.0.0/16:1-1024"]
dns = true
[profiles.all.http]
outbound = ["http://127.0.0.1:8080-8089", "http://[::1]:*"]
wagi = false
[profiles.all.limits]
memory = 1048576
cpu_time = "500ms"
deadline = "1m30s"
fuel = 1000000
request_deadline = "5s"
[profiles.empty]
"#;
    let p = Policy::parse(text, "x.toml").unwrap();
    let all = p.profile("all").unwrap();
    assert_eq!(all.mounts[0], MountGrant::new("/config", Access::Ro));
    assert_eq!(all.mounts[1].path, "/data");
    assert_eq!(all.mounts[2].guest_path(), "/");
    assert_eq!(all.mounts[2].describe(), "/srv/site->/:ro");
    assert_eq!(all.limits.memory, Some(1 << 20));
    assert_eq!(all.limits.cpu_time, Some(Duration::from_millis(500)));
    assert_eq!(all.limits.deadline, Some(Duration::from_secs(90)));
    assert_eq!(all.limits.fuel, Some(1_000_000));
    assert_eq!(all.network.connect[1].ports, (0, u16::MAX));
    assert_eq!(all.limits.request_deadline, Some(Duration::from_secs(5)));
    assert_eq!(all.http.outbound[0].ports, (8080, 8089));
    assert_eq!(all.http.outbound[1].to_string(), "http://[::1]:*");
    assert!(!all.http.wagi);
    let empty = p.profile("empty").unwrap();
    assert!(empty.http.wagi && empty.http.outbound.is_empty());
    assert!(empty.namespaces.is_empty() && empty.env.is_empty() && empty.modules.is_none());
}

/// What an error must show: its variant's line and key, and a message fragment.
struct Case {
    name: &'static str,
    text: &'static str,
    line: usize,
    key: &'static str,
    contains: &'static str,
}

#[test]
fn errors_name_file_line_and_key() {
    let cases = [
        Case {
            name: "unknown key in a profile",
            text: "version = 1\n[profiles.x]\nenv = []\nfoo = 1\n",
            line: 4,
            key: "profiles.x.foo",
            contains: "unknown key 'foo' in [profiles.x]",
        },
        Case {
            name: "unknown top-level key",
            text: "version = 1\nprofile = 2\n",
            line: 2,
            key: "profile",
            contains: "unknown key 'profile' in the top level",
        },
        Case {
            name: "unknown key in a sub-table",
            text: "version = 1\n[profiles.x.network]\ndns = true\nudp = true\n",
            line: 4,
            key: "profiles.x.network.udp",
            contains: "unknown key 'udp' in [profiles.x.network]",
        },
        Case {
            name: "unknown key in a mount",
            text: "version = 1\n[profiles.x]\nmounts = [\n  { path = \"/a\" },\n  { path = \"/b\", mode = \"rw\" },\n]\n",
            line: 5,
            key: "profiles.x.mounts[1].mode",
            contains: "unknown key 'mode' in profiles.x.mounts[1]",
        },
        Case {
            name: "unknown key in a namespace",
            text: "version = 1\n[namespaces.a]\nprofile = \"x\"\n",
            line: 3,
            key: "namespaces.a.profile",
            contains: "unknown key 'profile' in [namespaces.a]",
        },
        Case {
            name: "missing version",
            text: "[profiles.x]\n",
            line: 1,
            key: "version",
            contains: "missing key 'version'",
        },
        Case {
            name: "wrong version",
            text: "# c\nversion = 2\n",
            line: 2,
            key: "version",
            contains: "unsupported policy version 2",
        },
        Case {
            name: "version as a string",
            text: "version = \"1\"\n",
            line: 1,
            key: "version",
            contains: "invalid type",
        },
        Case {
            name: "bad env glob",
            text: "version = 1\n[profiles.x]\nenv = [\n  \"OK\",\n  \"BAD?\",\n]\n",
            line: 5,
            key: "profiles.x.env[1]",
            contains: "not allowed in an env name",
        },
        Case {
            name: "bad CIDR",
            text: "version = 1\n[profiles.x.network]\nconnect = [\"10.0.0.0/8:1\",\n \"10.0.0.0/33:5432\"]\n",
            line: 4,
            key: "profiles.x.network.connect[1]",
            contains: "prefix /33",
        },
        Case {
            name: "missing port",
            text: "version = 1\n[profiles.x.network]\nlisten = [\"0.0.0.0\"]\n",
            line: 3,
            key: "profiles.x.network.listen[0]",
            contains: "missing port",
        },
        Case {
            name: "bad port",
            text: "version = 1\n[profiles.x.network]\nlisten = [\"0.0.0.0:99999\"]\n",
            line: 3,
            key: "profiles.x.network.listen[0]",
            contains: "not a port number",
        },
        Case {
            name: "http URL with a path",
            text: "version = 1\n[profiles.x.http]\noutbound = [\"https://api.example.com/v1\"]\n",
            line: 3,
            key: "profiles.x.http.outbound[0]",
            contains: "path",
        },
        Case {
            name: "http URL with a bad scheme",
            text: "version = 1\n[profiles.x.http]\noutbound = [\"ftp://x\"]\n",
            line: 3,
            key: "profiles.x.http.outbound[0]",
            contains: "scheme",
        },
        Case {
            name: "bad size",
            text: "version = 1\n[profiles.x.limits]\nmemory = \"64 Mi\"\n",
            line: 3,
            key: "profiles.x.limits.memory",
            contains: "size",
        },
        Case {
            name: "negative size",
            text: "version = 1\n[profiles.x.limits]\nmemory = -5\n",
            line: 3,
            key: "profiles.x.limits.memory",
            contains: "greater than zero",
        },
        Case {
            name: "bad duration",
            text: "version = 1\n[profiles.x.limits]\n\ncpu_time = \"2 seconds\"\n",
            line: 4,
            key: "profiles.x.limits.cpu_time",
            contains: "duration",
        },
        Case {
            name: "duration without unit",
            text: "version = 1\n[profiles.x.limits]\ndeadline = 30\n",
            line: 3,
            key: "profiles.x.limits.deadline",
            contains: "unit",
        },
        Case {
            name: "bad fuel",
            text: "version = 1\n[profiles.x.limits]\nfuel = 0\n",
            line: 3,
            key: "profiles.x.limits.fuel",
            contains: "fuel",
        },
        Case {
            name: "bad digest",
            text: "version = 1\n[profiles.x]\nmodules = [\"sha256:abc\"]\n",
            line: 3,
            key: "profiles.x.modules[0]",
            contains: "sha256:<64 hex digits>",
        },
        Case {
            name: "bad access",
            text: "version = 1\n[profiles.x]\nmounts = [{ path = \"/a\", access = \"wo\" }]\n",
            line: 3,
            key: "profiles.x.mounts[0].access",
            contains: "\"ro\" or \"rw\"",
        },
        Case {
            name: "relative mount",
            text: "version = 1\n[profiles.x]\nmounts = [{ path = \"data\" }]\n",
            line: 3,
            key: "profiles.x.mounts[0].path",
            contains: "absolute",
        },
        Case {
            name: "mount with ..",
            text: "version = 1\n[profiles.x]\nmounts = [\"/data/../etc\"]\n",
            line: 3,
            key: "profiles.x.mounts[0]",
            contains: "'..'",
        },
        Case {
            name: "mount listed twice",
            text: "version = 1\n[profiles.x]\nmounts = [\"/a\",\n \"/a/\"]\n",
            line: 4,
            key: "profiles.x.mounts[1]",
            contains: "listed twice",
        },
        Case {
            name: "nested mounts with different access",
            text: "version = 1\n[profiles.x]\nmounts = [{ path = \"/data\", access = \"rw\" },\n  { path = \"/data/config\" }]\n",
            line: 4,
            key: "profiles.x.mounts[1]",
            contains: "/data (rw) and /data/config (ro) are nested with different access",
        },
        Case {
            name: "root grant around a read-write one",
            text: "version = 1\n[profiles.x]\nmounts = [\"/\", { path = \"/data\", access = \"rw\" }]\n",
            line: 3,
            key: "profiles.x.mounts[1]",
            contains: "nested with different access",
        },
        Case {
            name: "two grants at one guest path",
            text: "version = 1\n[profiles.x]\nmounts = [{ path = \"/srv/a\", guest = \"/\" },\n  { path = \"/srv/b\", guest = \"/\" }]\n",
            line: 4,
            key: "profiles.x.mounts[1]",
            contains: "both seen by the module at /",
        },
        Case {
            name: "relative guest path",
            text: "version = 1\n[profiles.x]\nmounts = [{ path = \"/srv\", guest = \"srv\" }]\n",
            line: 3,
            key: "profiles.x.mounts[0].guest",
            contains: "absolute",
        },
        Case {
            name: "mount without path",
            text: "version = 1\n[profiles.x]\nmounts = [{ access = \"rw\" }]\n",
            line: 3,
            key: "profiles.x.mounts[0].path",
            contains: "missing key 'path'",
        },
        Case {
            name: "default names a missing profile",
            text: "version = 1\n[namespaces.a]\ndefault = \"nope\"\n[profiles.b]\n",
            line: 3,
            key: "namespaces.a.default",
            contains: "'nope' is not defined",
        },
        Case {
            name: "profile named strict",
            text: "version = 1\n\n[profiles.strict]\nenv = [\"A\"]\n",
            line: 3,
            key: "profiles.strict",
            contains: "built-in",
        },
        Case {
            name: "wrong type",
            text: "version = 1\n[profiles.x]\nnative = \"yes\"\n",
            line: 3,
            key: "profiles.x.native",
            contains: "invalid type",
        },
        Case {
            name: "wildcard namespace table",
            text: "version = 1\n[namespaces.\"*\"]\ndefault = \"strict\"\n",
            line: 2,
            key: "namespaces.\"*\"",
            contains: "no wildcards",
        },
        Case {
            name: "empty namespace entry",
            text: "version = 1\n[profiles.x]\nnamespaces = [\"\"]\n",
            line: 3,
            key: "profiles.x.namespaces[0]",
            contains: "namespace name",
        },
    ];
    for c in &cases {
        let err = match Policy::parse(c.text, "/etc/warden/policy.toml") {
            Ok(_) => panic!("{}: parsed, expected an error", c.name),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert_eq!(err.file(), "/etc/warden/policy.toml", "{}: {shown}", c.name);
        assert_eq!(err.line(), Some(c.line), "{}: {shown}", c.name);
        assert_eq!(err.key().as_deref(), Some(c.key), "{}: {shown}", c.name);
        assert!(
            shown.starts_with(&format!("/etc/warden/policy.toml:{}: ", c.line)),
            "{}: {shown}",
            c.name
        );
        assert!(
            shown.contains(c.contains),
            "{}: {shown:?} lacks {:?}",
            c.name,
            c.contains
        );
        assert!(
            !shown.contains('\n'),
            "{}: one line please: {shown:?}",
            c.name
        );
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let err = Policy::parse("version = 1\n[profiles.x\n", "p.toml").unwrap_err();
    assert!(matches!(err, PolicyError::Syntax { line: 2, .. }), "{err}");
    assert!(err.to_string().starts_with("p.toml:2: "), "{err}");
    let err = Policy::parse("version = 1\nversion = 1\n", "p.toml").unwrap_err();
    assert_eq!(err.line(), Some(2), "{err}");
}

#[test]
fn load_reads_files_and_reports_absence() {
    let dir = std::env::temp_dir().join(format!("warden-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, DESIGN_EXAMPLE).unwrap();
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.source(), path.display().to_string());

    std::fs::write(&path, "version = 1\nbogus = true\n").unwrap();
    let err = Policy::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:2: unknown key 'bogus' in the top level", path.display())
    );

    let missing = dir.join("absent.toml");
    let err = Policy::load(&missing).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let strict = Policy::load_or_strict(&missing).unwrap();
    assert_eq!(strict.profiles().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn only_a_regular_policy_file_of_bounded_size_is_read() {
    // A FIFO at the policy path blocked every create; /dev/zero was read until the shim ran
    // out of memory. Each is refused at once, and is an error, never a fallback to strict.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; (4 << 20) + 1]).unwrap();
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"version = 1\n# \xff\xfe\n").unwrap();
    let cases = [
        (fifo, "it is a FIFO, not a regular file"),
        (
            "/dev/zero".into(),
            "it is a character device, not a regular file",
        ),
        (
            dir.path().to_owned(),
            "it is a directory, not a regular file",
        ),
        (big, "4194305 bytes is more than the 4194304 bytes"),
        (binary, "invalid utf-8"),
    ];
    for (path, want) in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Policy::load_or_strict(&p).map(|_| ()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{}: loading blocked", path.display()));
        let err = got.expect_err("not a policy, and not strict either");
        assert!(!err.is_not_found(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(want) && text.contains(&path.display().to_string()),
            "{}: {text}",
            path.display()
        );
    }
}
