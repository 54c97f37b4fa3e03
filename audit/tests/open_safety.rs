//! Opening the log: only a regular file, never through a symlink, never blocking on a FIFO,
//! a new log created exclusively with a private mode.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use warden_audit::{AuditError, Record, append, event, open, verify_file};

fn record(i: usize) -> Record {
    Record {
        node: "node-1".into(),
        container_id: Some(format!("c{i}")),
        ..Record::new("shim", event::CREATE)
    }
}

/// Runs `f` on another thread and fails the test if it takes more than 10 s (a blocking
/// open of a FIFO would hang forever).
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the call blocked for more than 10 s")
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn a_symlinked_log_is_refused_and_its_target_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("passwd");
    std::fs::write(&target, "root:x:0:0::/root:/bin/sh\n").unwrap();
    let log = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink(&target, &log).unwrap();

    let e = append(&log, &mut record(0)).unwrap_err();
    assert!(
        matches!(
            e,
            AuditError::NotRegularFile {
                what: "a symlink",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "audit log {} is a symlink; refusing (the audit log must be a regular file)",
            log.display()
        )
    );
    assert!(open(&log).is_err());
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );

    // A dangling symlink is not followed to create its target either.
    let missing = dir.path().join("created-through-link");
    let dangling = dir.path().join("dangling.jsonl");
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    let e = append(&dangling, &mut record(0)).unwrap_err();
    assert!(matches!(e, AuditError::NotRegularFile { .. }), "{e:?}");
    assert!(!missing.exists());
}

#[test]
fn a_fifo_log_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    mkfifo(&log);
    let l = log.clone();
    let e = within_10s(move || append(&l, &mut record(0)).unwrap_err());
    assert!(
        matches!(e, AuditError::NotRegularFile { what: "a FIFO", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("is a FIFO; refusing"), "{e}");
    let l = log.clone();
    assert!(within_10s(move || open(&l).is_err()));
    assert!(
        std::fs::symlink_metadata(&log)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn devices_directories_and_sockets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("audit.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let cases: Vec<(&Path, &str)> = vec![
        (Path::new("/dev/null"), "a character device"),
        (Path::new("/dev/full"), "a character device"),
        (dir.path(), "a directory"),
        (&sock, "a socket"),
    ];
    for (path, want) in cases {
        let p = path.to_owned();
        let e = within_10s(move || append(&p, &mut record(0)).unwrap_err());
        match &e {
            AuditError::NotRegularFile { what, .. } => assert_eq!(*what, want, "{e}"),
            other => panic!("{}: {other:?}", path.display()),
        }
    }
}

#[test]
fn a_regular_log_keeps_working_and_a_new_one_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("new/audit.jsonl");
    for i in 0..3 {
        append(&log, &mut record(i)).unwrap();
    }
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    assert_eq!(verify_file(&log, None).unwrap().records, 4);

    // The descriptor `open` returns appends, and is not left non-blocking.
    let f = open(&log).unwrap();
    let flags = rustix::fs::fcntl_getfl(&f).unwrap();
    assert!(flags.contains(rustix::fs::OFlags::APPEND));
    assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
    warden_audit::append_to_file(&f, &mut record(9)).unwrap();
    assert_eq!(verify_file(&log, None).unwrap().records, 5);

    // An existing log that someone else created (0644 here) is used as it is.
    let other = dir.path().join("other.jsonl");
    append(&other, &mut record(0)).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
    append(&other, &mut record(1)).unwrap();
    assert_eq!(verify_file(&other, None).unwrap().records, 3);
}

#[test]
fn many_first_writers_make_one_anchor() {
    // The create race: every thread finds no log, one O_EXCL create wins, the others open
    // the winner's file. Exactly one anchor.
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = &log;
                s.spawn(move || append(log, &mut record(t)).unwrap());
            }
        });
        let sum = verify_file(&log, None).unwrap();
        assert_eq!(sum.records, 5, "round {round}");
        assert_eq!(sum.events["anchor"], 1, "round {round}");
    }
}

#[test]
fn reading_refuses_what_appending_refuses_and_never_blocks() {
    // `warden audit verify/head/show --file X` read the log: a FIFO or /dev/zero there
    // read forever before.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    mkfifo(&fifo);
    let target = dir.path().join("real.jsonl");
    append(&target, &mut record(0)).unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (fifo, "a FIFO"),
        ("/dev/zero".into(), "a character device"),
        (dir.path().to_owned(), "a directory"),
        (link, "a symlink"),
    ];
    for (path, want) in cases {
        let p = path.clone();
        let e = within_10s(move || warden_audit::open_for_reading(&p).unwrap_err());
        match &e {
            AuditError::NotRegularFile { what, .. } => assert_eq!(*what, want, "{e}"),
            other => panic!("{}: {other:?}", path.display()),
        }
        let p = path.clone();
        let e = within_10s(move || verify_file(&p, None).unwrap_err());
        assert!(e.to_string().contains(want), "{}: {e}", path.display());
    }
    // A regular log reads, and a missing one says so.
    assert_eq!(verify_file(&target, None).unwrap().records, 2);
    let e = verify_file(dir.path().join("missing"), None).unwrap_err();
    assert!(e.to_string().contains("No such file"), "{e}");
}
