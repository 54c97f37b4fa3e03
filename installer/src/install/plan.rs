//! `warden plan`: what `install` would do, exactly, and nothing else. It reads the node
//! like `install` does and refuses the same way, but writes nothing: not the state dir,
//! not the lock, not the audit log.

use anyhow::Result;
use serde_json::json;

use super::args::PlanArgs;
use super::context::{self, Node, Refusal};
use super::outcome::Outcome;

/// `warden plan`.
pub fn plan(args: &PlanArgs) -> Result<Outcome> {
    context::check_root(&args.node)?;
    context::check_state_dir(&args.node)?;
    let store = context::store(&args.node);
    let prior = store.load().map_err(Refusal::from)?;
    let node = Node::inspect(&args.node, prior.as_ref())?;
    let noop = node.is_noop(prior.as_ref());

    let mut plan = node.plan.clone();
    if plan.restart.is_none()
        && let Some(unit) = node.restart_unit(prior.as_ref())
    {
        plan.restart = Some(unit);
        plan.notes.push(
            "an earlier run changed containerd's config and stopped before restarting it: \
             install restarts it"
                .to_owned(),
        );
    }
    let restart_method = plan
        .restart
        .as_deref()
        .map(|unit| node.restart.describe(unit));

    let mut lines: Vec<String> = node.layout.summary().lines().map(str::to_owned).collect();
    lines.extend(node.links.iter().map(|l| l.describe()));
    lines.push(format!("containerd socket: {}", node.socket.display()));
    lines.push(String::new());
    lines.push(node.binary_action.describe(&node.binary, &node.shim));
    lines.extend(plan.render_diff().lines().map(str::to_owned));
    if let Some(method) = &restart_method {
        lines.push(format!("restart method: {method}"));
    }
    match &prior {
        Some(state) => lines.push(format!(
            "state: {} says {}",
            store.state_path().display(),
            state.phase
        )),
        None => lines.push(format!("state: none yet in {}", store.dir().display())),
    }
    lines.push(if noop {
        "install would change nothing and not restart containerd".to_owned()
    } else {
        format!(
            "install would write the above{}",
            match &plan.restart {
                Some(unit) => format!(", then restart `{unit}`"),
                None => ", without restarting containerd".to_owned(),
            }
        )
    });

    Ok(Outcome {
        code: 0,
        json: json!({
            "ok": true,
            "noop": noop,
            "node": node.facts(),
            "binary": {
                "path": node.binary,
                "change": node.binary_action,
                "digest": node.shim.digest,
            },
            "plan": plan,
            "restart": {
                "unit": plan.restart,
                "method": restart_method,
            },
            "state": prior,
        }),
        lines,
    })
}
