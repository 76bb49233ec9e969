//! Node processes of the demo and the benches: `intelmesh run --config …` children with their
//! output in log files, killed whenever their parent ends unless the demo hands them over with
//! [`Fleet::detach`].
//!
//! Three things make sure no child outlives a parent that did not mean to keep it: `Drop` kills
//! and reaps them (errors, panics, Ctrl-C handled by the demo); each child gets its own process
//! group, so a terminal's Ctrl-C reaches only the parent, which then stops them in order; and a
//! parent-death signal (Linux) kills them if the parent itself is killed outright. That signal
//! fires when the *thread* that spawned the child ends, so spawn from a thread that lives as
//! long as the children (the main thread: the future given to `block_on`, never a task).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use intelmesh_core::OrgId;

struct Proc {
    child: Child,
    log: PathBuf,
}

pub struct Fleet {
    exe: PathBuf,
    /// Children may outlive the demo (`--keep`): no parent-death signal.
    keep: bool,
    procs: BTreeMap<OrgId, Proc>,
}

impl Fleet {
    pub fn new(keep: bool) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("finding the intelmesh executable")?;
        Ok(Fleet {
            exe,
            keep,
            procs: BTreeMap::new(),
        })
    }

    /// Starts `intelmesh run --config CONFIG` for `org`, appending its output to `log`.
    pub fn spawn(&mut self, org: &OrgId, config: &Path, log: &Path) -> anyhow::Result<u32> {
        if self.procs.contains_key(org) {
            anyhow::bail!("node {org} is already running");
        }
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        if !self.keep {
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} run", self.exe.display()))?;
        let pid = child.id();
        self.procs.insert(
            org.clone(),
            Proc {
                child,
                log: log.to_path_buf(),
            },
        );
        Ok(pid)
    }

    /// SIGKILLs `org`'s process and reaps it: a crash, not a shutdown.
    pub fn kill(&mut self, org: &OrgId) -> anyhow::Result<()> {
        let mut p = self
            .procs
            .remove(org)
            .with_context(|| format!("node {org} is not running"))?;
        p.child.kill().with_context(|| format!("killing {org}"))?;
        p.child.wait().with_context(|| format!("reaping {org}"))?;
        Ok(())
    }

    /// An error naming the node and the end of its log if its process has exited.
    pub fn check_alive(&mut self, org: &OrgId) -> anyhow::Result<()> {
        let Some(p) = self.procs.get_mut(org) else {
            anyhow::bail!("node {org} is not running");
        };
        if let Some(status) = p.child.try_wait()? {
            anyhow::bail!(
                "node {org} exited ({status}); its log {} ends with:\n{}",
                p.log.display(),
                log_tail(&p.log, 8)
            );
        }
        Ok(())
    }

    pub fn check_all_alive(&mut self) -> anyhow::Result<()> {
        let orgs: Vec<OrgId> = self.procs.keys().cloned().collect();
        orgs.iter().try_for_each(|o| self.check_alive(o))
    }

    /// Asks every node to stop (SIGTERM, a clean shutdown) and waits up to `grace` before
    /// killing the ones still running.
    pub async fn terminate_all(&mut self, grace: std::time::Duration) {
        for p in self.procs.values() {
            if let Ok(pid) = libc::pid_t::try_from(p.child.id()) {
                // SAFETY: kill(2) on a child we spawned and have not reaped yet.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline
            && self
                .procs
                .values_mut()
                .any(|p| matches!(p.child.try_wait(), Ok(None)))
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for (_, mut p) in std::mem::take(&mut self.procs) {
            if matches!(p.child.try_wait(), Ok(None)) {
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
    }

    pub fn pids(&self) -> BTreeMap<OrgId, u32> {
        self.procs
            .iter()
            .map(|(org, p)| (org.clone(), p.child.id()))
            .collect()
    }

    /// Leaves the processes running.
    pub fn detach(mut self) {
        self.procs.clear();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, mut p) in std::mem::take(&mut self.procs) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// The last `n` lines of a log file, indented, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return "  (log unreadable)".to_string();
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
