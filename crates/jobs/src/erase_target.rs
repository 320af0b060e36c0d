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

/// The target as one process sees it: the state of every request, and how
/// much of the log it has read. Several processes (replicas) may share one
/// log: appends of a whole line are atomic, and each reader catches up
/// with what others appended before it answers.
pub struct EraseTarget {
    path: PathBuf,
    state: Mutex<View>,
}

#[derive(Default)]
struct View {
    requests: HashMap<String, Erase>,
    /// The machine each request erases.
    machines: HashMap<String, String>,
    /// Bytes of the log already applied (always at a line boundary).
    read: u64,
}

impl View {
    /// Applies whatever whole lines were appended since the last read. A
    /// torn last line (a crash mid-append, or an append in progress) is
    /// left for later: its event did not happen as far as anyone was told.
    fn catch_up(&mut self, path: &Path) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.read)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        for line in buf[..=end].split(|b| *b == b'\n') {
            if let Ok(e) = serde_json::from_slice::<Event>(line) {
                apply(&mut self.requests, &e);
                self.machines
                    .entry(e.request.clone())
                    .or_insert_with(|| e.machine.clone());
            }
        }
        self.read += end as u64 + 1;
    }
}

impl EraseTarget {
    /// Opens (creating) the log and indexes it.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut view = View::default();
        view.catch_up(path);
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(view),
        })
    }

    pub fn get(&self, request: &str) -> Option<Erase> {
        let mut view = self.state.lock().expect("target lock");
        view.catch_up(&self.path);
        view.requests.get(request).copied()
    }

    /// The state of an erase request and the machine it erases.
    pub fn lookup(&self, request: &str) -> Option<(Erase, String)> {
        let mut view = self.state.lock().expect("target lock");
        view.catch_up(&self.path);
        let state = view.requests.get(request).copied()?;
        Some((
            state,
            view.machines.get(request).cloned().unwrap_or_default(),
        ))
    }

    /// Records an event durably (one append of a whole line), then applies
    /// it with everything else appended meanwhile.
    pub fn record(&self, e: Event) -> std::io::Result<()> {
        let mut view = self.state.lock().expect("target lock");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(&e).expect("plain data serializes");
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()?;
        view.catch_up(&self.path);
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
