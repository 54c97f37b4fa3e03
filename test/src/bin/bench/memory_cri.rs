//! Memory per CRI pod: N pods through CRI as the kubelet starts them (RunPodSandbox with the
//! pause image, then one sleeping container), handler `warden` (the pause native under
//! warden, the p1 `sleep` guest as Wasm) against handler `runc` (the same pause, the static
//! native program sleeping). A pod's figure is RSS and PSS summed over the process trees of
//! every shim its sandbox and container run under (containerd may start one shim per pod or
//! one per container; each shim is counted once).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use warden_cri::ContainerSpec;
use warden_test::sandbox::HANDLER;

use crate::cri::{NATIVE_IMAGE, Node, WASM_SLEEP_IMAGE};
use crate::memory::{Tree, parent_map, settle, tree};

/// Starts `n` sleeping pods under `handler`, reads each pod's shim trees, removes the pods.
pub fn sleeping_pods(node: &mut Node, n: usize, handler: &str) -> Result<Vec<Tree>> {
    let mut pods = Vec::new();
    let result = start_and_read(node, n, handler, &mut pods);
    for id in &pods {
        if let Err(e) = node.cri.stop_and_remove_pod(id) {
            eprintln!("bench: cannot remove pod {id}: {e}");
        }
    }
    result
}

fn start_and_read(
    node: &mut Node,
    n: usize,
    handler: &str,
    pods: &mut Vec<String>,
) -> Result<Vec<Tree>> {
    let mut ids = Vec::new();
    for i in 0..n {
        let pod = node.pod(&format!("mem-{i}"), handler);
        let log_dir = pod.log_dir.clone().context("the pod has a log dir")?;
        std::fs::create_dir_all(log_dir.join("sleep")).context("the pod's log dir")?;
        let pod_id = node.cri.run_pod(&pod).context("RunPodSandbox")?;
        pods.push(pod_id.clone());
        let spec = if handler == HANDLER {
            ContainerSpec::new("sleep", WASM_SLEEP_IMAGE).args(["600"])
        } else {
            ContainerSpec::new("sleep", NATIVE_IMAGE).args(["sleep", "600"])
        }
        .log_path("sleep/0.log");
        let id = node
            .cri
            .create_container(&pod_id, &pod, &spec)
            .context("CreateContainer")?;
        node.cri.start_container(&id).context("StartContainer")?;
        ids.push((pod_id, id));
    }
    std::thread::sleep(settle()?);
    let tasks = node.c.ctr_ok(["task", "ls"]);
    let parents = parent_map();
    let pid_of = |id: &str| -> Result<u32> {
        tasks
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no task {id} in:\n{tasks}"))
    };
    ids.iter()
        .map(|(pod_id, id)| {
            let shims: BTreeSet<u32> = [pid_of(pod_id)?, pid_of(id)?]
                .iter()
                .map(|pid| {
                    parents
                        .get(pid)
                        .copied()
                        .with_context(|| format!("pid {pid} has no parent"))
                })
                .collect::<Result<_>>()?;
            let mut total = Tree::default();
            for shim in shims {
                total.add(&tree(shim, &parents, handler, false));
            }
            Ok(total)
        })
        .collect()
}
