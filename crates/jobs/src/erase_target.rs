//! The simulated erase target: stands in for the disk-erase service a real
//! diskErase would call.
//!
//! It lives outside Interlock's database, as a real target would: an
//! append-only JSON-lines log (`start`, `done`, `abort` per erase request id),
//! fsynced on every event. An erase, once started, completes on the target
//! `duration` after its start whether or not Interlock is still watching —
//! which is what lets a restarted diskErase re-attach to it instead of
//! erasing twice. The log doubles as the effect log the crash tests audit.

use interlock_core::Micros;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One line of the target's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub request: String,
    pub machine: String,
    /// `start`, `done` or `abort`.
    pub event: String,
    pub at: Micros,
    /// Who asked: workflow id, block, job.
    pub workflow: String,
    pub block: usize,
    pub job: usize,
}

/// State of one erase request on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erase {
    Running { started: Micros },
    Done { started: Micros, ended: Micros },
    Aborted,
}

pub struct EraseTarget {
    path: PathBuf,
    state: Mutex<HashMap<String, Erase>>,
}

impl EraseTarget {
    /// Opens (creating) the log and indexes it.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut state = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            // A torn last line (crash mid-append) is ignored: its event did
            // not happen as far as anyone was told.
            for e in text
                .lines()
                .filter_map(|l| serde_json::from_str::<Event>(l).ok())
            {
                apply(&mut state, &e);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    pub fn get(&self, request: &str) -> Option<Erase> {
        self.state
            .lock()
            .expect("target lock")
            .get(request)
            .copied()
    }

    /// Records an event durably, then applies it.
    pub fn record(&self, e: Event) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("target lock");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(&e).expect("plain data serializes");
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()?;
        apply(&mut state, &e);
        Ok(())
    }

    /// Every event in the log, in order (for audits).
    pub fn events(path: &Path) -> Vec<Event> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn apply(state: &mut HashMap<String, Erase>, e: &Event) {
    let next = match (e.event.as_str(), state.get(&e.request)) {
        ("start", None) => Erase::Running { started: e.at },
        ("done", Some(Erase::Running { started })) => Erase::Done {
            started: *started,
            ended: e.at,
        },
        ("abort", Some(Erase::Running { .. })) => Erase::Aborted,
        _ => return,
    };
    state.insert(e.request.clone(), next);
}
