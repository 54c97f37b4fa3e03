//! Restarting a unit through systemd's D-Bus API, as `systemctl restart` does, without
//! `systemctl` or systemd's runtime dir: only a socket.
//!
//! `org.freedesktop.systemd1.Manager.RestartUnit(unit, "replace")` queues a job and returns
//! its object path; the job's end is the `JobRemoved(id, job, unit, result)` signal, whose
//! `result` is `done` when the unit restarted. The signal is subscribed to before the call,
//! so a job that ends before the reply arrives is not missed.
//!
//! Two kinds of socket speak this protocol:
//!
//! - the system bus (`/run/dbus/system_bus_socket`, a dbus-daemon): a bus connection (the
//!   `Hello` handshake, `AddMatch` for the signal), to the name `org.freedesktop.systemd1`;
//! - systemd's private socket (`/run/systemd/private`, what `systemctl` uses as root, and the
//!   only one on kind's nodes, which run no dbus-daemon): a direct peer-to-peer connection to
//!   systemd itself, with no bus daemon, no `Hello` and no match rules.
//!
//! The address is `DBUS_SYSTEM_BUS_ADDRESS` when set, else the system bus's. An address
//! naming systemd's private socket is connected peer to peer; any other as a bus, and peer to
//! peer if the bus handshake fails (a private socket under another path).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use zbus::connection::Builder;
use zbus::message::Type as MessageType;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath};

/// The environment variable that names the system bus's address.
pub const ADDRESS_ENV: &str = "DBUS_SYSTEM_BUS_ADDRESS";
/// The system bus's address when [`ADDRESS_ENV`] is not set.
pub const DEFAULT_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";
/// systemd's private socket: a direct connection to systemd, not a bus.
pub const SYSTEMD_PRIVATE_SOCKET: &str = "/run/systemd/private";

const SERVICE: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long connecting (and the bus handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a restart through D-Bus failed. Callers branch on [`DbusError::JobFailed`] (systemd
/// ran the job and it failed) against the rest (systemd was not reached, or did not say).
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("cannot connect to D-Bus at {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("systemd refused to restart {unit}: {detail}")]
    Call { unit: String, detail: String },
    #[error("the job restarting {unit} ({job}) ended with result `{result}`, not `done`")]
    JobFailed {
        unit: String,
        job: String,
        result: String,
    },
    #[error("the job restarting {unit} ({job}) did not finish within {after:?}")]
    Timeout {
        unit: String,
        job: String,
        after: Duration,
    },
    #[error("D-Bus connection to systemd lost while waiting for {unit}'s restart: {detail}")]
    Lost { unit: String, detail: String },
    #[error("cannot start the D-Bus client: {0}")]
    Runtime(String),
}

/// How a restart went: the job's object path and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDone {
    pub job: String,
    pub millis: u64,
    /// `bus` or `peer-to-peer`.
    pub connection: &'static str,
}

/// The D-Bus address warden uses: [`ADDRESS_ENV`] when set and not empty, else
/// [`DEFAULT_ADDRESS`].
pub fn address_from_env() -> String {
    match std::env::var(ADDRESS_ENV) {
        Ok(a) if !a.trim().is_empty() => a.trim().to_owned(),
        _ => DEFAULT_ADDRESS.to_owned(),
    }
}

/// The socket path of a `unix:path=...` address (the first one of a list), if it is one.
pub fn unix_path(address: &str) -> Option<&str> {
    let first = address.split(';').next()?;
    let rest = first.strip_prefix("unix:")?;
    rest.split(',')
        .find_map(|kv| kv.strip_prefix("path="))
        .filter(|p| !p.is_empty())
}

/// Whether `address` is systemd's private socket, which is always a direct connection.
pub fn is_systemd_private(address: &str) -> bool {
    unix_path(address).is_some_and(|p| Path::new(p) == Path::new(SYSTEMD_PRIVATE_SOCKET))
}

/// Restarts `unit` (`containerd.service`) through systemd at `address` and waits, at most
/// `timeout`, for its job to end; `done` is success, any other result a
/// [`DbusError::JobFailed`].
pub fn restart_unit(address: &str, unit: &str, timeout: Duration) -> Result<JobDone, DbusError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DbusError::Runtime(e.to_string()))?;
    runtime.block_on(restart_async(address, unit, timeout))
}

async fn restart_async(address: &str, unit: &str, timeout: Duration) -> Result<JobDone, DbusError> {
    let start = Instant::now();
    let (conn, connection) = connect(address).await?;
    let call_error = |e: zbus::Error| DbusError::Call {
        unit: unit.to_owned(),
        detail: e.to_string(),
    };
    // Subscribe first: the job may end before RestartUnit's reply is read.
    let mut rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .path(PATH)
        .interface(MANAGER)
        .member("JobRemoved");
    if conn.is_bus() {
        rule = rule.sender(SERVICE);
    }
    let rule = rule.build().map_err(call_error)?;
    let mut removed = MessageStream::for_match_rule(rule, &conn, None)
        .await
        .map_err(call_error)?;
    // systemd sends its signals on the system bus only while a client has subscribed (on its
    // private socket it sends them to every peer; Subscribe is harmless there).
    if let Err(e) = conn
        .call_method(Some(SERVICE), PATH, Some(MANAGER), "Subscribe", &())
        .await
        && !is_already_subscribed(&e)
    {
        return Err(call_error(e));
    }
    let reply = conn
        .call_method(
            Some(SERVICE),
            PATH,
            Some(MANAGER),
            "RestartUnit",
            &(unit, "replace"),
        )
        .await
        .map_err(call_error)?;
    let job: OwnedObjectPath = reply.body().deserialize().map_err(call_error)?;
    let job = job.as_str().to_owned();
    let deadline = tokio::time::Instant::now() + timeout.saturating_sub(start.elapsed());
    loop {
        let next = match tokio::time::timeout_at(deadline, removed.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(DbusError::Timeout {
                    unit: unit.to_owned(),
                    job,
                    after: timeout,
                });
            }
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                return Err(DbusError::Lost {
                    unit: unit.to_owned(),
                    detail: e.to_string(),
                });
            }
            None => {
                return Err(DbusError::Lost {
                    unit: unit.to_owned(),
                    detail: "the connection closed".to_owned(),
                });
            }
        };
        // JobRemoved(u id, o job, s unit, s result); a malformed one is not ours.
        let Ok((_id, path, _unit, result)) = message
            .body()
            .deserialize::<(u32, OwnedObjectPath, String, String)>()
        else {
            continue;
        };
        if path.as_str() != job {
            continue;
        }
        if result == "done" {
            return Ok(JobDone {
                job,
                millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                connection,
            });
        }
        return Err(DbusError::JobFailed {
            unit: unit.to_owned(),
            job,
            result,
        });
    }
}

fn is_already_subscribed(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _)
        if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed")
}

/// Connects to `address`: peer to peer to systemd's private socket, else as a bus client,
/// falling back to peer to peer when the bus handshake fails.
async fn connect(address: &str) -> Result<(Connection, &'static str), DbusError> {
    let failed = |detail: String| DbusError::Connect {
        address: address.to_owned(),
        detail,
    };
    if is_systemd_private(address) {
        return p2p(address)
            .await
            .map(|c| (c, "peer-to-peer"))
            .map_err(failed);
    }
    match with_timeout(Builder::address(address).build()).await {
        Ok(conn) => Ok((conn, "bus")),
        Err(bus_error) => match p2p(address).await {
            Ok(conn) => Ok((conn, "peer-to-peer")),
            Err(p2p_error) => Err(failed(format!(
                "as a bus: {bus_error}; peer to peer: {p2p_error}"
            ))),
        },
    }
}

async fn p2p(address: &str) -> Result<Connection, String> {
    with_timeout(Builder::address(address).p2p().build()).await
}

async fn with_timeout(
    build: impl std::future::Future<Output = zbus::Result<Connection>>,
) -> Result<Connection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, build).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            unix_path("unix:path=/run/systemd/private"),
            Some("/run/systemd/private")
        );
        assert_eq!(
            unix_path("unix:guid=abc,path=/x.sock;tcp:host=h,port=1"),
            Some("/x.sock")
        );
        assert_eq!(unix_path("unix:abstract=/tmp/dbus-x"), None);
        assert_eq!(unix_path("tcp:host=localhost,port=1"), None);
        assert!(is_systemd_private("unix:path=/run/systemd/private"));
        assert!(!is_systemd_private(DEFAULT_ADDRESS));
    }

    #[test]
    fn a_missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}", dir.path().join("none.sock").display());
        let err = restart_unit(&address, "containerd.service", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, DbusError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("none.sock"), "{err}");
    }
}
