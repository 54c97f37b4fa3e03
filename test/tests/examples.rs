//! The examples of `examples/`, on a real containerd through `ctr`, each as its README shows
//! it: its image (built by `make -C examples`, see [`warden_test::examples`]), its own
//! `policy.toml` as the node policy, `ctr -n warden-example run` with its profile annotation.
//! Each one's output is asserted; then each runs once without its grants (under `strict`, or
//! under its profile with the one grant taken out) and what it is denied is asserted, in its
//! output and in the audit log.
//!
//! What the audit log holds for a denial depends on the grant. A request the policy refuses
//! at run time (`http.outbound`) or at create (`http.wagi`) is a `deny` record naming the
//! rule. An env var or a directory that is not granted is never given to the module at all:
//! the module sees no such thing, and the audit log's `create` record shows the profile and
//! the grants the module got (`strict`, `nothing`) and its `exit` record the failure.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use warden_test::containerd::{Containerd, Options, RunOpts, RunResult};
use warden_test::examples::{self, Examples};
use warden_test::http::{Upstream, get, request};
use warden_test::service::Service;

/// The namespace the examples' profiles name: for `ctr`, the containerd namespace.
const NAMESPACE: &str = "warden-example";
/// Compiling the interpreters (Python, JavaScript) takes a while in a debug build of the shim.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn built() -> &'static Examples {
    examples::build_examples(Some(Path::new(env!("CARGO_BIN_EXE_oci-image"))))
}

/// A private containerd whose `ctr` namespace is `warden-example`, with the shim, the node
/// policy, the audit log and the compile cache in a temp dir.
struct Node {
    containerd: Containerd,
    files: TempDir,
}

fn node() -> Node {
    let examples = built();
    let files = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| files.path().join(name).display().to_string();
    let containerd = Containerd::start(Options {
        shim_dir: Some(warden_test::shim::shim_dir().to_path_buf()),
        env: vec![
            ("WARDEN_CACHE_DIR".into(), path("cache")),
            ("WARDEN_AUDIT_LOG".into(), path("audit.jsonl")),
            ("WARDEN_POLICY".into(), path("policy.toml")),
        ],
        namespace: NAMESPACE.into(),
        ..Options::default()
    });
    eprintln!(
        "examples built (or found up to date) in {:.1?}",
        examples.build_time()
    );
    Node { containerd, files }
}

impl Node {
    /// Imports example `name`'s image tar; returns the image's name.
    fn import(&self, name: &str) -> String {
        self.containerd.import(&built().image_tar(name));
        Examples::image_name(name)
    }

    /// The example's own policy file as the node policy.
    fn use_example_policy(&self, name: &str) {
        self.set_policy(&examples::example_file(name, "policy.toml"));
    }

    fn set_policy(&self, text: &str) {
        std::fs::write(self.files.path().join("policy.toml"), text).expect("write policy");
    }

    /// `ctr run` of example `name` with ARGS after its module path, under `profile` (`None`:
    /// no annotation, so the namespace's default, here `strict`); what it did, and the
    /// container's id.
    fn run(
        &self,
        name: &str,
        profile: Option<&str>,
        args: &[&str],
        opts: RunOpts,
    ) -> (RunResult, String) {
        let image = self.import(name);
        let mut argv = vec![Examples::module_path(name)];
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut opts = opts.args(argv).timeout(RUN_TIMEOUT);
        if let Some(profile) = profile {
            opts = opts.annotation("warden.dev/profile", profile);
        }
        let id = self.containerd.unique_id(name);
        (self.containerd.run(&image, &id, opts), id)
    }

    fn audit(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.files.path().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l}: {e}")))
            .collect()
    }

    /// Every audit record of container `id`.
    fn records(&self, id: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["container_id"] == id)
            .collect()
    }

    fn records_of(&self, id: &str, event: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["container_id"] == id && r["event"] == event)
            .collect()
    }
}

fn event<'a>(records: &'a [Value], name: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["event"] == name)
        .unwrap_or_else(|| panic!("no {name} record: {records:?}"))
}

/// The create record says what the module ran with: the profile and a summary of its grants
/// (a granted path says whether it is a container mount or a directory of the image).
fn assert_ran_with(records: &[Value], profile: &str, grants: &str) {
    let create = event(records, "create");
    assert_eq!(create["decision"], "allow", "{create}");
    assert_eq!(create["profile"], profile, "{create}");
    assert_eq!(create["grants"], grants, "{create}");
}

/// The module ran, was given nothing it needed, and failed: `strict` with no grants in the
/// create record, its own exit status in the exit record.
fn assert_denied_by_strict(records: &[Value], exit_code: i64) {
    assert_ran_with(records, "strict", "nothing");
    let exit = event(records, "exit");
    assert_eq!(exit["exit_code"], exit_code, "{exit}");
    assert_eq!(exit["ended"], "guest_exit", "{exit}");
}

#[test]
fn hello_says_hello_under_strict() {
    let n = node();
    n.use_example_policy("hello");
    let (r, id) = n.run("hello", None, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("Hello"), "{r:?}");
    assert_eq!(
        r.stdout.trim(),
        "Hello from WebAssembly: warden-example-hello ran under the strict profile"
    );
    let records = n.records(&id);
    assert_ran_with(&records, "strict", "nothing");
    assert_eq!(event(&records, "exit")["exit_code"], 0);
}

#[test]
fn the_hand_written_module_prints_its_line_under_strict() {
    let n = node();
    n.use_example_policy("wat");
    let wasm = std::fs::read(built().wasm("wat")).expect("wat module");
    assert!(
        wasm.len() < 256,
        "the smallest module is {} bytes",
        wasm.len()
    );
    let (r, id) = n.run("wat", None, &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "Hello from a hand-written module\n");
    assert_ran_with(&n.records(&id), "strict", "nothing");
}

#[test]
fn rust_cli_greets_into_its_rw_mount_and_strict_gives_it_neither_env_nor_mount() {
    let n = node();
    n.use_example_policy("rust-cli");
    let out = tempfile::tempdir().expect("out dir");
    let opts = || {
        RunOpts::warden()
            .env("GREETING", "Bonjour")
            .env("API_TOKEN", "not-for-the-module")
            .mount(out.path(), "/out", "rbind:rw")
    };
    let (r, id) = n.run("rust-cli", Some("rust-cli"), &["Ada", "Grace"], opts());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("Bonjour, Ada!\nBonjour, Grace!\n"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("rust-cli: wrote 2 greetings to /out/greetings.txt"),
        "{r:?}"
    );
    let written = std::fs::read_to_string(out.path().join("greetings.txt")).expect("greetings");
    assert_eq!(written, "Bonjour, Ada!\nBonjour, Grace!\n");
    assert_ran_with(
        &n.records(&id),
        "rust-cli",
        "mounts=/out:rw (mount) env=GREETING memory=16777216 deadline=10000ms",
    );

    // Under strict: no GREETING, no /out.
    let (r, id) = n.run("rust-cli", None, &["Linus"], opts());
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("GREETING is not set"), "{r:?}");
    assert!(
        r.stderr
            .contains("rust-cli: cannot write /out/greetings.txt"),
        "{r:?}"
    );
    let unchanged = std::fs::read_to_string(out.path().join("greetings.txt")).expect("greetings");
    assert_eq!(unchanged, written, "strict wrote into /out");
    assert_denied_by_strict(&n.records(&id), 1);
}

#[test]
fn rust_component_reads_its_ro_mount_cannot_write_it_and_strict_hides_it() {
    let n = node();
    n.use_example_policy("rust-component");
    let config = tempfile::tempdir().expect("config dir");
    std::fs::write(config.path().join("app.toml"), "mode = \"from-the-host\"\n").expect("write");
    std::fs::write(config.path().join("flags.txt"), "a\nb\n").expect("write");
    let opts = || RunOpts::warden().mount(config.path(), "/config", "rbind:ro");
    let (r, id) = n.run("rust-component", Some("rust-component"), &[], opts());
    assert_eq!(r.code, Some(0), "{r:?}");
    for want in [
        "rust-component: 2 files in /config\n",
        "app.toml: 23 bytes: mode = \"from-the-host\"\n",
        "flags.txt: 4 bytes: a\n",
        "rust-component: /config is read-only (",
    ] {
        assert!(r.stdout.contains(want), "no {want:?} in {r:?}");
    }
    assert!(
        !config.path().join(".rust-component-probe").exists(),
        "the module wrote into a read-only grant"
    );
    assert_ran_with(
        &n.records(&id),
        "rust-component",
        "mounts=/config:ro (mount) memory=16777216 deadline=10000ms",
    );

    // The image's own /config, when nothing is mounted there.
    let (r, _) = n.run(
        "rust-component",
        Some("rust-component"),
        &[],
        RunOpts::warden(),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("motd.txt: "), "{r:?}");

    let (r, id) = n.run("rust-component", None, &[], opts());
    // A WASI 0.2 command's failure is exit status 1.
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("rust-component: cannot read /config"),
        "{r:?}"
    );
    assert_denied_by_strict(&n.records(&id), 1);
}

#[test]
fn c_cli_counts_its_granted_file_and_strict_leaves_it_without_one() {
    let n = node();
    n.use_example_policy("c-cli");
    let (r, id) = n.run("c-cli", Some("c-cli"), &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        "/data/input.txt: 4 lines, 41 words, 263 bytes\nmost frequent word: \"the\" (3 times)\n"
    );
    assert_ran_with(
        &n.records(&id),
        "c-cli",
        "mounts=/data:ro (image) memory=16777216 deadline=10000ms",
    );
    let (r, id) = n.run("c-cli", None, &[], RunOpts::warden());
    assert_eq!(r.code, Some(1), "{r:?}");
    // wasi-libc finds no preopened directory for the path: ENOTCAPABLE.
    assert!(
        r.stderr
            .contains("c-cli: cannot open /data/input.txt: Capabilities insufficient"),
        "{r:?}"
    );
    assert!(r.stdout.is_empty(), "{r:?}");
    assert_denied_by_strict(&n.records(&id), 1);
}

#[test]
fn go_cli_hashes_its_granted_directory_and_strict_leaves_it_without_one() {
    let n = node();
    n.use_example_policy("go-cli");
    let (r, id) = n.run("go-cli", Some("go-cli"), &[], RunOpts::warden());
    assert_eq!(r.code, Some(0), "{r:?}");
    for (file, in_image) in [
        ("orders.csv", "/data/orders.csv"),
        ("reports/q1.txt", "/data/reports/q1.txt"),
    ] {
        let bytes = examples::example_file("go-cli", &format!("data/{file}"));
        let digest = warden_common::Digest::of(bytes.as_bytes()).to_string();
        let hex = digest.trim_start_matches("sha256:");
        let line = format!("{hex}  {:>8}  {in_image}\n", bytes.len());
        assert!(r.stdout.contains(&line), "no {line:?} in {r:?}");
    }
    assert!(
        r.stdout.contains("go-cli: 2 files, 85 bytes in /data\n"),
        "{r:?}"
    );
    assert_ran_with(
        &n.records(&id),
        "go-cli",
        "mounts=/data:ro (image) memory=33554432 deadline=10000ms",
    );
    let (r, id) = n.run("go-cli", None, &[], RunOpts::warden());
    assert_eq!(r.code, Some(1), "{r:?}");
    // Go's wasip1 port: no preopen holds /data, so the lookup fails with EBADF.
    assert!(r.stderr.contains("go-cli: lstat /data: "), "{r:?}");
    assert_denied_by_strict(&n.records(&id), 1);
}

#[test]
fn python_computes_its_stats_and_strict_leaves_it_without_its_input() {
    let n = node();
    n.use_example_policy("python");
    let size = std::fs::metadata(built().wasm("python"))
        .expect("python module")
        .len();
    eprintln!("the Python component is {size} bytes (CPython and its stdlib inside)");
    let first = Instant::now();
    let (r, id) = n.run("python", Some("python"), &[], RunOpts::warden());
    let cold = first.elapsed();
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("Hello from Python 3."), "{r:?}");
    assert!(
        r.stdout
            .contains("count=5 mean=10.4 median=9 stdev=6.768\n"),
        "{r:?}"
    );
    assert_ran_with(
        &n.records(&id),
        "python",
        "mounts=/data:ro (image) memory=67108864 deadline=30000ms",
    );
    // Given its numbers as arguments it needs no grant.
    let second = Instant::now();
    let (r, _) = n.run("python", None, &["1", "2", "3", "4"], RunOpts::warden());
    let warm = second.elapsed();
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("count=4 mean=2.5 median=2.5"), "{r:?}");
    eprintln!("python: first run (compile) {cold:.1?}, second run (compile cache) {warm:.1?}");
    // Without them, under strict: no /data.
    let (r, id) = n.run("python", None, &[], RunOpts::warden());
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("stats: [Errno 44] No such file or directory: '/data/numbers.txt'"),
        "{r:?}"
    );
    assert_denied_by_strict(&n.records(&id), 1);
}

// ---------------------------------------------------------------------------------------
// The HTTP examples: served on a free port of 127.0.0.1 (`--net-host`, WARDEN_HTTP_ADDR).

fn serve<'a>(n: &'a Node, name: &str, profile: Option<&str>, opts: RunOpts) -> Service<'a> {
    let image = n.import(name);
    let id = n.containerd.unique_id(name);
    Service::start(
        &n.containerd,
        &image,
        &id,
        &Examples::module_path(name),
        profile,
        opts,
        RUN_TIMEOUT,
    )
}

/// SIGTERM; the service drains and exits 0.
fn stop(svc: Service<'_>) -> RunResult {
    let r = svc.stop();
    assert_eq!(r.code, Some(0), "{r:?}");
    r
}

/// The `http.outbound` denials of container `id`, each checked to name `origin`.
fn outbound_denials(n: &Node, id: &str, origin: &str) -> Vec<Value> {
    examples::outbound_denials(n.records_of(id, "deny"), origin)
}

#[test]
fn rust_http_calls_its_one_allowed_origin_and_nothing_without_the_grant() {
    let n = node();
    let upstream = Upstream::start();
    let origin = format!("http://{}", upstream.addr);
    n.set_policy(&examples::policy_with_outbound(
        "rust-http",
        "rust-http",
        Some(&origin),
    ));
    let env = |o: RunOpts| o.env("UPSTREAM_URL", &format!("{origin}/quote"));
    let svc = serve(&n, "rust-http", Some("rust-http"), env(RunOpts::warden()));
    let r = get(svc.addr, "/").expect("GET /");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.text(),
        format!("rust-http: GET /upstream calls \"{origin}/quote\"\n")
    );
    let r = get(svc.addr, "/upstream").expect("GET /upstream");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "upstream 200: upstream ok\n");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/quote");
    let id = svc.id();
    stop(svc);
    let created = n.records_of(&id, "create");
    assert_eq!(created[0]["profile"], "rust-http", "{created:?}");
    assert!(
        created[0]["grants"]
            .as_str()
            .is_some_and(|g| g.contains("env=UPSTREAM_URL") && g.contains(&origin)),
        "{created:?}"
    );
    assert!(n.records_of(&id, "deny").is_empty(), "{:?}", n.audit());

    // The same profile without its outbound grant: the request never leaves.
    n.set_policy(&examples::policy_with_outbound(
        "rust-http",
        "rust-http",
        None,
    ));
    let svc = serve(&n, "rust-http", Some("rust-http"), env(RunOpts::warden()));
    let r = get(svc.addr, "/upstream").expect("GET /upstream");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.text(), "upstream error: HttpRequestDenied\n");
    let id = svc.id();
    stop(svc);
    assert_eq!(upstream.seen().len(), 1, "{:?}", upstream.seen());
    let denials = outbound_denials(&n, &id, &origin);
    assert_eq!(denials.len(), 1, "{:?}", n.audit());
    assert_eq!(denials[0]["profile"], "rust-http");
    assert!(
        denials[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("allows no outgoing requests")),
        "{denials:?}"
    );
}

#[test]
fn js_http_fetches_only_its_allowed_origin() {
    let n = node();
    let allowed = Upstream::start();
    let other = Upstream::start();
    let origin = format!("http://{}", allowed.addr);
    n.set_policy(&examples::policy_with_outbound(
        "js-http",
        "js-http",
        Some(&origin),
    ));
    let size = std::fs::metadata(built().wasm("js-http"))
        .expect("js-http module")
        .len();
    eprintln!("the JavaScript component is {size} bytes (SpiderMonkey inside)");
    let svc = serve(&n, "js-http", Some("js-http"), RunOpts::warden());
    let r = get(svc.addr, "/").expect("GET /");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "Hello from JavaScript in a wasi:http component\n");
    let r = get(svc.addr, &format!("/fetch?url={origin}/allowed")).expect("fetch");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "upstream 200: upstream ok\n");
    // Another port of the same host is another origin.
    let other_origin = format!("http://{}", other.addr);
    let r = get(svc.addr, &format!("/fetch?url={other_origin}/other")).expect("fetch");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().starts_with("fetch failed: "), "{r:?}");
    let id = svc.id();
    stop(svc);
    assert_eq!(allowed.seen().len(), 1, "{:?}", allowed.seen());
    assert!(other.seen().is_empty(), "{:?}", other.seen());
    assert_eq!(
        outbound_denials(&n, &id, &other_origin).len(),
        1,
        "{:?}",
        n.audit()
    );

    // Under strict nothing goes out.
    let svc = serve(&n, "js-http", None, RunOpts::warden());
    let r = get(svc.addr, &format!("/fetch?url={origin}/strict")).expect("fetch");
    assert_eq!(r.status, 502, "{r:?}");
    let id = svc.id();
    stop(svc);
    assert_eq!(allowed.seen().len(), 1, "{:?}", allowed.seen());
    let denials = outbound_denials(&n, &id, &origin);
    assert_eq!(denials.len(), 1, "{:?}", n.audit());
    assert_eq!(denials[0]["profile"], "strict");
}

#[test]
fn wagi_serves_its_site_and_is_refused_where_wagi_is_not_allowed() {
    let n = node();
    n.use_example_policy("wagi");
    let wagi = || RunOpts::warden().annotation("warden.dev/http", "wagi");
    let svc = serve(&n, "wagi", Some("wagi"), wagi());
    let r = get(svc.addr, "/?lang=en").expect("GET /");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "Hello from WAGI: GET / query=\"lang=en\"\n");
    let r = get(svc.addr, "/files/index.html").expect("GET /files/index.html");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.text(), examples::example_file("wagi", "site/index.html"));
    let r = request(svc.addr, "POST", "/echo", &[], b"ping").expect("POST /echo");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "echo 4 bytes: ping\n");
    let r = get(svc.addr, "/files/../etc/passwd").expect("GET");
    assert_eq!(r.status, 404, "{r:?}");
    let out = stop(svc);
    assert!(
        out.stderr.contains("wagi: GET /files/index.html"),
        "{out:?}"
    );

    // Under strict it still serves (WAGI needs no grant), but /site is not there.
    let svc = serve(&n, "wagi", None, wagi());
    let r = get(svc.addr, "/files/index.html").expect("GET /files/index.html");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.text().starts_with("/site/index.html: "), "{r:?}");
    let id = svc.id();
    stop(svc);
    let created = n.records_of(&id, "create");
    assert_eq!(created[0]["profile"], "strict", "{created:?}");
    assert_eq!(created[0]["grants"], "nothing", "{created:?}");

    // Its profile with `wagi = false`: refused at create, with the rule.
    let policy =
        examples::example_file("wagi", "policy.toml").replace("wagi = true", "wagi = false");
    assert!(policy.contains("wagi = false"));
    n.set_policy(&policy);
    let (r, _) = n.run(
        "wagi",
        Some("wagi"),
        &[],
        wagi().env("WARDEN_HTTP_ADDR", "127.0.0.1:1"),
    );
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr.contains("warden refused to run the container"),
        "{r:?}"
    );
    assert!(r.stderr.contains("rule http.wagi"), "{r:?}");
    let denials: Vec<Value> = n
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "deny" && r["rule"] == "http.wagi")
        .collect();
    assert_eq!(denials.len(), 1, "{:?}", n.audit());
    assert_eq!(denials[0]["profile"], "wagi");
}
