//! The audit log end to end: appending from many writers, and every kind of tampering.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use warden_audit::{
    AuditError, ChainBreak, Pin, Record, VerifyErrorKind, append, append_to_file, event, verify,
    verify_file, verify_file_pins, verify_pinned, verify_pins,
};

fn record(writer: &str, ev: &str, i: usize) -> Record {
    Record {
        node: "node-1".into(),
        container_id: Some(format!("c{i}")),
        pod_namespace: Some("payments".into()),
        pod_name: Some(format!("api-{i}")),
        image: Some("registry.example/api:1".into()),
        reason: i
            .is_multiple_of(7)
            .then(|| "quote \" and newline \n and ünïcode".into()),
        exit_code: (ev == event::EXIT).then_some(0),
        ..Record::new(writer, ev)
    }
}

/// A log of `n` records (plus the anchor) from three writers.
fn build_log(path: &Path, n: usize) {
    let writers = ["shim", "installer", "cli"];
    let events = [event::CREATE, event::START, event::EXIT, event::DELETE];
    for i in 0..n {
        let mut r = record(writers[i % 3], events[i % 4], i);
        append(path, &mut r).unwrap();
    }
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut out: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if out.last().is_some_and(Vec::is_empty) {
        out.pop();
    }
    out
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

#[test]
fn intact_log_of_many_writers_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/audit.jsonl");
    build_log(&path, 60);
    let sum = verify_file(&path, None).unwrap();
    assert_eq!(sum.records, 61);
    assert_eq!(
        sum.writers["shim"], 21,
        "20 shim records + the anchor, written by the first writer"
    );
    assert_eq!(sum.writers["installer"], 20);
    assert_eq!(sum.writers["cli"], 20);
    assert_eq!(sum.events["anchor"], 1);
    assert_eq!(sum.nodes.iter().collect::<Vec<_>>(), ["node-1"]);
    assert!(sum.first_time.as_deref() <= sum.last_time.as_deref());
    let all = lines(&path);
    let first: serde_json::Value = serde_json::from_slice(&all[0]).unwrap();
    assert_eq!(first["event"], "anchor");
    assert_eq!(first["prev"], "0".repeat(64));
    assert_eq!(first["node"], "node-1");
    // Optional fields that are None are left out.
    let second: serde_json::Value = serde_json::from_slice(&all[1]).unwrap();
    assert!(second.get("digest_before").is_none());
    // The file mode is 0640.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    // Pinning the last hash works, and so does pinning an earlier line.
    let pinned = verify_pinned(std::fs::File::open(&path).unwrap(), &sum.last_hash).unwrap();
    assert_eq!(pinned.pinned_line, Some(61));
}

/// Tampering with a 40-record log, and the error each must give.
#[test]
fn every_tamper_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    build_log(&path, 40);
    let orig = lines(&path);
    let n = orig.len(); // 41
    let replace_in = |l: &[u8], from: &str, to: &str| -> Vec<u8> {
        let s = String::from_utf8(l.to_vec()).unwrap();
        assert!(s.contains(from), "{s} lacks {from}");
        s.replacen(from, to, 1).into_bytes()
    };

    type Tamper = Box<dyn Fn(&[Vec<u8>]) -> Vec<u8>>;
    type Expect = Box<dyn Fn(&VerifyErrorKind) -> bool>;
    let cases: Vec<(&str, Tamper, u64, Expect)> = vec![
        (
            "edit a field",
            Box::new(move |l| {
                let mut l = l.to_vec();
                l[9] = replace_in(&l[9], "\"pod_name\":\"api-", "\"pod_name\":\"evil-");
                join(&l)
            }),
            11,
            Box::new(|k| {
                matches!(
                    k,
                    VerifyErrorKind::ChainBroken(ChainBreak::EditedOrRemoved { previous: 10 })
                )
            }),
        ),
        (
            "edit the anchor",
            Box::new(move |l| {
                let mut l = l.to_vec();
                l[0] = replace_in(&l[0], "node-1", "node-2");
                join(&l)
            }),
            2,
            Box::new(|k| {
                matches!(
                    k,
                    VerifyErrorKind::ChainBroken(ChainBreak::EditedOrRemoved { previous: 1 })
                )
            }),
        ),
        (
            "remove a line",
            Box::new(|l| {
                let mut l = l.to_vec();
                l.remove(9);
                join(&l)
            }),
            10,
            Box::new(|k| {
                matches!(
                    k,
                    VerifyErrorKind::ChainBroken(ChainBreak::EditedOrRemoved { previous: 9 })
                )
            }),
        ),
        (
            "swap two lines",
            Box::new(|l| {
                let mut l = l.to_vec();
                l.swap(9, 10);
                join(&l)
            }),
            10,
            Box::new(|k| {
                matches!(
                    k,
                    VerifyErrorKind::ChainBroken(ChainBreak::Reordered { after: 11 })
                )
            }),
        ),
        (
            "move a line up",
            Box::new(|l| {
                let mut l = l.to_vec();
                let moved = l.remove(30);
                l.insert(5, moved);
                join(&l)
            }),
            6,
            Box::new(|k| {
                matches!(
                    k,
                    VerifyErrorKind::ChainBroken(ChainBreak::Reordered { after: 31 })
                )
            }),
        ),
        (
            "duplicate a line",
            Box::new(|l| {
                let mut l = l.to_vec();
                let dup = l[20].clone();
                l.insert(25, dup);
                join(&l)
            }),
            26,
            Box::new(|k| {
                matches!(
                    k,
                    VerifyErrorKind::ChainBroken(ChainBreak::Inserted {
                        first: 21,
                        last: 25
                    })
                )
            }),
        ),
        (
            "truncate the last line",
            Box::new(|l| {
                let mut data = join(l);
                data.truncate(data.len() - 10);
                data
            }),
            n as u64,
            Box::new(|k| matches!(k, VerifyErrorKind::TruncatedLastLine)),
        ),
        (
            "drop the final newline",
            Box::new(|l| {
                let mut data = join(l);
                data.pop();
                data
            }),
            n as u64,
            Box::new(|k| matches!(k, VerifyErrorKind::TruncatedLastLine)),
        ),
        (
            "append garbage",
            Box::new(|l| {
                let mut data = join(l);
                data.extend_from_slice(b"garbage\n");
                data
            }),
            n as u64 + 1,
            Box::new(|k| matches!(k, VerifyErrorKind::NotJson { .. })),
        ),
        (
            "append garbage without newline",
            Box::new(|l| {
                let mut data = join(l);
                data.extend_from_slice(b"garbage");
                data
            }),
            n as u64 + 1,
            Box::new(|k| matches!(k, VerifyErrorKind::TruncatedLastLine)),
        ),
        (
            "append a forged record with a made-up prev",
            Box::new(|l| {
                let mut data = join(l);
                data.extend_from_slice(
                    format!("{{\"event\":\"exit\",\"prev\":\"{}\"}}\n", "ab".repeat(32)).as_bytes(),
                );
                data
            }),
            n as u64 + 1,
            Box::new(|k| {
                matches!(
                    k,
                    VerifyErrorKind::ChainBroken(ChainBreak::EditedOrRemoved { .. })
                )
            }),
        ),
        (
            "delete the anchor",
            Box::new(|l| join(&l[1..])),
            1,
            Box::new(|k| matches!(k, VerifyErrorKind::AnchorMissing { .. })),
        ),
        (
            "remove prev",
            Box::new(move |l| {
                let mut l = l.to_vec();
                let s = String::from_utf8(l[4].clone()).unwrap();
                let i = s.find(",\"prev\":").unwrap();
                l[4] = format!("{}}}", &s[..i]).into_bytes();
                join(&l)
            }),
            5,
            Box::new(|k| matches!(k, VerifyErrorKind::MissingPrev)),
        ),
        (
            "blank line",
            Box::new(|l| {
                let mut l = l.to_vec();
                l.insert(3, Vec::new());
                join(&l)
            }),
            4,
            Box::new(|k| matches!(k, VerifyErrorKind::NotJson { .. })),
        ),
        (
            "empty log",
            Box::new(|_| Vec::new()),
            1,
            Box::new(|k| matches!(k, VerifyErrorKind::Empty)),
        ),
    ];
    for (name, tamper, want_line, want_kind) in cases {
        let data = tamper(&orig);
        match verify(&data[..]) {
            Ok(s) => panic!("{name}: verified: {s:?}"),
            Err(e) => {
                assert_eq!(e.line, want_line, "{name}: {e}");
                assert!(want_kind(&e.kind), "{name}: {e}");
                assert!(
                    !e.to_string().contains('\n'),
                    "{name}: one line please: {e}"
                );
            }
        }
    }
}

/// Editing the last line, or cutting whole lines from the end, leaves a valid chain; the
/// pinned hash is what catches it.
#[test]
fn pinning_catches_changes_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    build_log(&path, 10);
    let sum = verify_file(&path, None).unwrap();
    let orig = lines(&path);

    let mut edited = orig.clone();
    let last = edited.len() - 1;
    edited[last] = String::from_utf8(edited[last].clone())
        .unwrap()
        .replacen("api-", "evil-", 1)
        .into_bytes();
    let cut = orig[..orig.len() - 2].to_vec();
    for (name, l) in [("edited last line", edited), ("cut tail", cut)] {
        let data = join(&l);
        assert!(
            verify(&data[..]).is_ok(),
            "{name}: the chain alone cannot see this"
        );
        let e = verify_pinned(&data[..], &sum.last_hash).unwrap_err();
        assert!(
            matches!(e.kind, VerifyErrorKind::PinNotFound { .. }),
            "{name}: {e}"
        );
    }
    // After more appends the pinned line is still found.
    build_log(&path, 3);
    let later = verify_file(&path, Some(&sum.last_hash)).unwrap();
    assert_eq!(later.pinned_line, Some(11));
    assert_eq!(later.records, 14);
}

/// What pins prove, and what they cannot: each claim of the README's "The audit log".
#[test]
fn pins_prove_up_to_the_latest_pinned_line_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    build_log(&path, 10);
    let sum = verify_file(&path, None).unwrap();
    assert_eq!(sum.records, 11);
    assert_eq!(sum.anchor_node, "node-1");
    assert_eq!(
        sum.proven(),
        None,
        "no pin, nothing proven beyond the chain"
    );
    let anchor: Pin = format!("1:{}", sum.anchor_hash).parse().unwrap();
    let last: Pin = format!("11:{}", sum.last_hash).parse().unwrap();
    let last_any: Pin = sum.last_hash.parse().unwrap();
    assert_eq!(last.to_string(), format!("11:{}", sum.last_hash));
    assert_eq!(last_any.line, None);

    let ok = verify_file_pins(&path, &[last, anchor]).unwrap();
    assert_eq!(ok.pinned_lines, [11, 1]);
    assert_eq!(ok.pinned_line, Some(11));
    assert_eq!(ok.proven(), Some((11, 0)));
    let orig = lines(&path);

    // The last line deleted: the chain alone passes, the pin of that line fails, naming it.
    let cut = join(&orig[..10]);
    assert!(verify(&cut[..]).is_ok());
    let e = verify_pins(&cut[..], &[last]).unwrap_err();
    assert_eq!(e.line, 11, "{e}");
    assert!(
        matches!(e.kind, VerifyErrorKind::PinBeyondEnd { last: 10, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("ends at line 10"), "{e}");
    let e = verify_pins(&cut[..], &[last_any]).unwrap_err();
    assert!(matches!(e.kind, VerifyErrorKind::PinNotFound { .. }), "{e}");

    // The last line replaced (with a correct prev): the same.
    let mut replaced = orig.clone();
    replaced[10] = String::from_utf8(replaced[10].clone())
        .unwrap()
        .replacen("\"c9\"", "\"c666\"", 1)
        .into_bytes();
    let replaced = join(&replaced);
    assert!(verify(&replaced[..]).is_ok());
    let e = verify_pins(&replaced[..], &[last]).unwrap_err();
    assert_eq!(e.line, 11, "{e}");
    assert!(matches!(e.kind, VerifyErrorKind::PinMismatch { .. }), "{e}");

    // Rewritten from scratch (a new anchor, a new chain): passes, but not the anchor pin.
    let fresh = dir.path().join("fresh.jsonl");
    let mut a = record("shim", event::CREATE, 0);
    a.time = "2020-01-01T00:00:00.000000Z".into();
    append(&fresh, &mut a).unwrap();
    build_log(&fresh, 9);
    std::fs::rename(&fresh, &path).unwrap();
    assert_eq!(verify_file(&path, None).unwrap().records, 11);
    let e = verify_file_pins(&path, &[anchor]).unwrap_err();
    assert_eq!(e.line, 1, "{e}");
    assert!(e.to_string().contains("rewritten from scratch"), "{e}");

    // Rewritten after a kept anchor: the anchor pin passes and proves only line 1.
    let mut kept = vec![orig[0].clone()];
    let tail = dir.path().join("tail.jsonl");
    build_log(&tail, 10);
    let tail_lines = lines(&tail);
    let mut chain = warden_audit::Chain::after_line(&orig[0]);
    for l in &tail_lines[1..] {
        let mut r: Record = serde_json::from_slice(l).unwrap();
        let mut out = Vec::new();
        chain.encode_into(&mut r, &mut out).unwrap();
        out.pop();
        kept.push(out);
    }
    let kept = join(&kept);
    let s = verify_pins(&kept[..], &[anchor]).unwrap();
    assert_eq!(s.proven(), Some((1, 10)));

    // A forged line appended with a correct prev: passes even with the pin, and is
    // reported as not proven by it.
    std::fs::write(&path, join(&orig)).unwrap();
    let mut forged = record("shim", event::EXIT, 77);
    forged.reason = Some("nothing happened here".into());
    append(&path, &mut forged).unwrap();
    let s = verify_file_pins(&path, &[anchor, last]).unwrap();
    assert_eq!(s.proven(), Some((11, 1)));
    // The hash-only form finds the line wherever it is.
    let s = verify_file_pins(&path, &[last_any]).unwrap();
    assert_eq!(s.pinned_line, Some(11));
}

#[test]
fn pins_parse_strictly() {
    let h = "ab".repeat(32);
    assert_eq!(h.parse::<Pin>().unwrap().line, None);
    assert_eq!(format!("42:{h}").parse::<Pin>().unwrap().line, Some(42));
    assert_eq!(
        h.to_uppercase().parse::<Pin>().unwrap(),
        h.parse::<Pin>().unwrap()
    );
    for bad in [
        String::new(),
        "ab".repeat(31),
        "zz".repeat(32),
        format!("0:{h}"),
        format!("+1:{h}"),
        format!("x:{h}"),
        format!(":{h}"),
        format!("1:{h}:"),
        format!("1:{h}0"),
    ] {
        let e = bad.parse::<Pin>().unwrap_err();
        assert!(e.to_string().contains("LINE:HASH"), "{e}");
    }
    // verify_pinned takes either form.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    build_log(&path, 2);
    let sum = verify_file(&path, None).unwrap();
    let data = std::fs::read(&path).unwrap();
    assert_eq!(
        verify_pinned(&data[..], &format!("3:{}", sum.last_hash))
            .unwrap()
            .pinned_line,
        Some(3)
    );
    let e = verify_pinned(&data[..], &format!("2:{}", sum.last_hash)).unwrap_err();
    assert_eq!(e.line, 2);
    let e = verify_pinned(&data[..], "\u{1b}[31m").unwrap_err();
    assert!(!e.to_string().contains('\u{1b}'), "{e}");
}

/// Text from the log reaches an error message escaped.
#[test]
fn errors_escape_what_the_log_says() {
    let data = format!(
        "{{\"event\":\"\\u001b]0;owned\\u0007\u{202e}\",\"prev\":\"{}\"}}\n",
        "0".repeat(64)
    );
    let e = verify(data.as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e.kind, VerifyErrorKind::AnchorMissing { .. }),
        "{msg}"
    );
    assert!(msg.contains("'\\x1b]0;owned\\x07\\u{202e}'"), "{msg}");
    assert!(
        !msg.chars().any(warden_audit::is_unsafe_for_terminal),
        "{msg}"
    );
}

#[test]
fn torn_write_is_not_glued_onto() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    build_log(&path, 3);
    {
        use std::io::Write;
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"time":"2026-11-25T00:00:00.000000Z","node":"no"#)
            .unwrap();
    }
    let e = verify_file(&path, None).unwrap_err();
    assert!(
        matches!(e.kind, VerifyErrorKind::TruncatedLastLine) && e.line == 5,
        "{e}"
    );

    let mut r = record("shim", event::CREATE, 99);
    append(&path, &mut r).unwrap();
    let all = lines(&path);
    assert_eq!(all.len(), 6);
    assert!(all[4].starts_with(b"{\"time\"") && !all[4].ends_with(b"}"));
    let last: Record = serde_json::from_slice(&all[5]).unwrap();
    assert_eq!(last.container_id.as_deref(), Some("c99"));
    let e = verify_file(&path, None).unwrap_err();
    assert!(
        matches!(e.kind, VerifyErrorKind::Torn) && e.line == 5,
        "{e}"
    );
    assert!(e.to_string().contains("torn write"), "{e}");
}

#[test]
fn append_to_an_open_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let file = &file;
            s.spawn(move || {
                for i in 0..50 {
                    append_to_file(file, &mut record(&format!("fd-{t}"), event::START, i)).unwrap();
                }
            });
        }
    });
    let sum = verify_file(&path, None).unwrap();
    assert_eq!(sum.records, 201);

    // Descriptors that cannot append safely are refused, naming the file.
    let write_only = OpenOptions::new().append(true).open(&path).unwrap();
    let not_append = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    for (f, why) in [(write_only, "read-write"), (not_append, "O_APPEND")] {
        let e = append_to_file(&f, &mut record("x", "y", 0)).unwrap_err();
        assert!(matches!(e, AuditError::BadDescriptor { .. }), "{e:?}");
        assert!(
            e.to_string().contains("audit.jsonl") && e.to_string().contains(why),
            "{e}"
        );
    }
    assert_eq!(verify_file(&path, None).unwrap().records, 201);
}

#[test]
fn disk_full_is_reported_as_such() {
    // `append` by path refuses /dev/full (not a regular file); a descriptor handed over is
    // the caller's to vouch for, so it reaches the write and its ENOSPC.
    let full = OpenOptions::new()
        .read(true)
        .append(true)
        .open("/dev/full")
        .unwrap();
    let e = append_to_file(&full, &mut record("shim", event::CREATE, 0)).unwrap_err();
    assert!(matches!(e, AuditError::Full { .. }), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("(/dev/full): cannot write: no space left on device"),
        "{e}"
    );
}

#[test]
fn unwritable_path_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    // A path under a regular file cannot be created, even by root.
    let e = append(
        blocker.join("audit.jsonl"),
        &mut record("shim", event::CREATE, 0),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "audit log {}",
            blocker.join("audit.jsonl").display()
        )),
        "{msg}"
    );
}

const CHILD_LOG: &str = "WARDEN_AUDIT_TEST_CHILD_LOG";
const CHILD_WRITER: &str = "WARDEN_AUDIT_TEST_CHILD_WRITER";
const PER_WRITER: usize = 200;

/// Not a test on its own: the body of the child processes of
/// `concurrent_threads_and_processes`, which re-runs this test binary with the env set.
#[test]
fn child_appender() {
    let (Ok(log), Ok(writer)) = (std::env::var(CHILD_LOG), std::env::var(CHILD_WRITER)) else {
        return;
    };
    // Start together with the parent's threads, not whenever the process got going.
    let go = PathBuf::from(format!("{log}.go"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !go.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for i in 0..PER_WRITER {
        append(&log, &mut record(&writer, event::START, i)).unwrap();
    }
}

#[test]
fn concurrent_threads_and_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("audit.jsonl");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|c| {
            Command::new(&exe)
                .args(["--exact", "child_appender", "--test-threads=1", "--quiet"])
                .env(CHILD_LOG, &path)
                .env(CHILD_WRITER, format!("proc-{c}"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(dir.path().join("audit.jsonl.go"), "").unwrap();
    std::thread::scope(|s| {
        for t in 0..3 {
            let path = &path;
            s.spawn(move || {
                for i in 0..PER_WRITER {
                    append(path, &mut record(&format!("thread-{t}"), event::START, i)).unwrap();
                }
            });
        }
    });
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let sum = verify_file(&path, None).unwrap();
    assert_eq!(sum.records, 1 + 6 * PER_WRITER as u64);
    assert_eq!(sum.events["anchor"], 1);
    assert_eq!(sum.events["start"], 6 * PER_WRITER as u64);
    // Every writer's records are all there, each whole, in that writer's own order.
    let records: Vec<Record> = lines(&path)
        .iter()
        .map(|l| serde_json::from_slice::<Record>(l).unwrap())
        .collect();
    let want: Vec<String> = (0..PER_WRITER).map(|i| format!("c{i}")).collect();
    for w in [
        "proc-0", "proc-1", "proc-2", "thread-0", "thread-1", "thread-2",
    ] {
        let ids: Vec<String> = records
            .iter()
            .filter(|r| r.writer == w && r.event == event::START)
            .filter_map(|r| r.container_id.clone())
            .collect();
        assert_eq!(ids, want, "{w}");
    }
    // The processes really ran at the same time as the threads: their records interleave.
    let first_proc = records.iter().position(|r| r.writer.starts_with("proc-"));
    let last_thread = records
        .iter()
        .rposition(|r| r.writer.starts_with("thread-"));
    assert!(
        first_proc < last_thread,
        "no overlap between processes and threads"
    );
}
