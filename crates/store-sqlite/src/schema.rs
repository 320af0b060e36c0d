//! The schema, as numbered migrations applied in order.
//!
//! `PRAGMA user_version` holds the number of migrations applied. A database
//! written by a newer interlockd (a higher version than this build knows) is
//! refused before anything is written to it. A migration is never edited
//! once released; changes are new migrations.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema. Blocks and jobs get rows only once something happens
    // to them; until then the stored request is their truth.
    "CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        request TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        had_errors INTEGER NOT NULL DEFAULT 0,
        es_stopped INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        started INTEGER,
        ended INTEGER,
        policy_version TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX workflows_status ON workflows(status);
    CREATE INDEX workflows_name_created ON workflows(name, created);
    CREATE TABLE blocks (
        workflow_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        status INTEGER NOT NULL,
        has_error INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        started INTEGER,
        ended INTEGER,
        PRIMARY KEY (workflow_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE jobs (
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        status INTEGER NOT NULL,
        error TEXT NOT NULL,
        outputs TEXT NOT NULL,
        started INTEGER,
        ended INTEGER,
        fatal INTEGER NOT NULL,
        attempts TEXT NOT NULL,
        PRIMARY KEY (workflow_id, block_idx, idx)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency (
        request_id TEXT PRIMARY KEY,
        content_hash TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE bucket_takes (
        bucket TEXT NOT NULL,
        taken_at INTEGER NOT NULL,
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        job_idx INTEGER NOT NULL
    );
    CREATE INDEX bucket_takes_by_bucket ON bucket_takes(bucket, taken_at);",
    // 2: job checkpoints (durable execution); lookups for reconcile and expiry.
    "ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
    CREATE INDEX bucket_takes_by_job ON bucket_takes(workflow_id, block_idx, job_idx);
    CREATE INDEX idempotency_created ON idempotency(created);",
    // 3: listing: newest-first scans by status and by label.
    "CREATE INDEX workflows_created ON workflows(created, id);
    CREATE INDEX workflows_status_created ON workflows(status, created, id);
    CREATE TABLE labels (
        workflow_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (key, value, created, workflow_id)
    ) WITHOUT ROWID;",
    // 4: the audit log.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        identity TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        request_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    // 5: who submitted and who executed each workflow.
    "ALTER TABLE workflows ADD COLUMN submitted_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE workflows ADD COLUMN executed_by TEXT NOT NULL DEFAULT '';",
    // 6: where each audited call came from.
    "ALTER TABLE audit ADD COLUMN peer TEXT NOT NULL DEFAULT '';",
    // 7: run ownership (owner instance and lease epoch per workflow), the
    // instances themselves, and bucket state as one GCRA timestamp per
    // (bucket, key). Workflows running before this migration have no owner:
    // the first instance claims them as orphans.
    "ALTER TABLE workflows ADD COLUMN owner TEXT;
    ALTER TABLE workflows ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        addr TEXT NOT NULL,
        version TEXT NOT NULL,
        started INTEGER NOT NULL,
        heartbeat INTEGER NOT NULL,
        expires INTEGER NOT NULL
    );
    ALTER TABLE bucket_takes ADD COLUMN key TEXT NOT NULL DEFAULT '';
    DROP INDEX bucket_takes_by_bucket;
    CREATE INDEX bucket_takes_by_bucket ON bucket_takes(bucket, key, taken_at);
    CREATE TABLE bucket_state (
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        tat INTEGER NOT NULL,
        per_token INTEGER NOT NULL,
        burst INTEGER NOT NULL,
        PRIMARY KEY (bucket, key)
    ) WITHOUT ROWID;
    CREATE INDEX audit_target ON audit(target, id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
    // 8: requests to a workflow's owner, and the shared emergency stop.
    "CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX requests_by_workflow ON requests(workflow_id);
    CREATE TABLE shared_stops (
        name TEXT PRIMARY KEY,
        stop INTEGER NOT NULL,
        reason TEXT NOT NULL,
        set_by TEXT NOT NULL,
        at INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 9: lease checks and compare-and-sets read status, owner and epoch from
    // this covering index: in the table those columns sit after the stored
    // request, which for a large workflow spans overflow pages that every
    // fenced write would otherwise walk.
    "CREATE INDEX workflows_run ON workflows(id, status, owner, epoch);",
    // 10: `workflows_status_created` starts with `status`, so this index only
    // cost one more B-tree update on every status change.
    "DROP INDEX workflows_status;",
    // 11: concurrency limits' slots (granted or waiting), one row per job
    // and limit; see interlock_store::slots.
    "CREATE TABLE limit_slots (
        limit_name TEXT NOT NULL,
        part TEXT NOT NULL,
        holder TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        job_idx INTEGER NOT NULL,
        granted INTEGER NOT NULL,
        since INTEGER NOT NULL,
        seen INTEGER NOT NULL,
        position INTEGER NOT NULL,
        held INTEGER NOT NULL,
        max INTEGER NOT NULL,
        PRIMARY KEY (limit_name, part, workflow_id, block_idx, job_idx)
    ) WITHOUT ROWID;
    CREATE INDEX limit_slots_by_workflow ON limit_slots(workflow_id, block_idx, job_idx);",
    // 12: approvers' decisions (the two-person rule), one per identity.
    "CREATE TABLE approvals (
        workflow_id TEXT NOT NULL,
        identity TEXT NOT NULL,
        roles TEXT NOT NULL,
        approve INTEGER NOT NULL,
        comment TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, identity)
    ) WITHOUT ROWID;",
    // 13: webhook notifications waiting for delivery.
    "CREATE TABLE notices (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        hook TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at INTEGER NOT NULL,
        created INTEGER NOT NULL,
        last_error TEXT NOT NULL
    );
    CREATE INDEX notices_due ON notices(next_at, id);",
    // 14: retention. Finished workflows are found by end time (a partial
    // index: only ended rows); labels are deleted by workflow; a tombstone
    // per pruned id answers "pruned" instead of a bare NotFound, until the
    // audit retention passes its end time.
    "CREATE INDEX workflows_ended ON workflows(ended) WHERE ended IS NOT NULL;
    CREATE INDEX labels_by_workflow ON labels(workflow_id);
    CREATE TABLE pruned (
        id TEXT PRIMARY KEY,
        ended INTEGER NOT NULL,
        pruned_at INTEGER NOT NULL,
        kept_days INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX pruned_ended ON pruned(ended);",
    // 15: workflow templates. A revision row is never updated or deleted;
    // `templates` holds each name's newest revision number and whether it
    // is disabled.
    "CREATE TABLE templates (
        name TEXT PRIMARY KEY,
        latest INTEGER NOT NULL,
        disabled_by TEXT,
        disabled_reason TEXT,
        disabled_at INTEGER
    );
    CREATE TABLE template_revisions (
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        body TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (name, revision)
    );",
    // 16: schedules. `next_fire` is compared-and-set to claim a fire;
    // `firing_*` mark a claimed fire until its outcome is recorded.
    "CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        workflow TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        next_fire INTEGER,
        firing_due INTEGER,
        firing_by TEXT NOT NULL DEFAULT '',
        firing_key INTEGER,
        last_due INTEGER,
        last_outcome TEXT NOT NULL DEFAULT '',
        last_workflow TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 17: the inventory, when it lives in the store. One meta row holds
    // the version every change bumps (replicas and the reloader poll it).
    "CREATE TABLE inventory_sites (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL
    );
    CREATE TABLE inventory_machines (
        site TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (site, name)
    );
    CREATE TABLE inventory_meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );",
    // 18: job log lines. `seq` (the rowid) orders a workflow's lines in
    // commit order; `n` numbers an attempt's lines, so trimming an attempt
    // to its newest is one range delete.
    "CREATE TABLE job_logs (
        seq INTEGER PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        job_idx INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        n INTEGER NOT NULL,
        at INTEGER NOT NULL,
        stream TEXT NOT NULL,
        line TEXT NOT NULL
    );
    CREATE INDEX job_logs_workflow ON job_logs (workflow_id, seq);
    CREATE INDEX job_logs_attempt ON job_logs (workflow_id, block_idx, job_idx, attempt, n);",
    // 19: a workflow's request in a table of its own, written once at
    // Submit. The `workflows` row is rewritten on every status change, and
    // the request was most of it (264 of about 430 bytes for a one-job
    // workflow): a mass e-stop wrote twice the pages it needs. Rows written
    // before keep their request in `workflows.request` (reads take whichever
    // is there); rows written since leave that column empty.
    "CREATE TABLE workflow_requests (
        workflow_id TEXT PRIMARY KEY,
        request TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 20: running workflows by owner, oldest first, for the orphan claim
    // (see `ops::claim_orphans`). Partial: a workflow is in it only while
    // it runs (2 is `Status::Running`), so Submit does not touch it.
    "CREATE INDEX workflows_running_owner ON workflows(owner, created) WHERE status = 2;",
    // 21: two index entries fewer for every workflow that ends, written by
    // the single writer (thousands at once in an e-stop). `workflows_run`
    // (9) kept lease checks and compare-and-sets off the stored request,
    // which since 19 is no longer in the row (rows written before it are
    // read through the table like any other). `workflows_ended` (14) found
    // retention's candidates, which `workflows_status_created` finds too
    // (see `retention::prune_workflows`).
    "DROP INDEX workflows_run;
    DROP INDEX workflows_ended;",
];

/// The schema version this build writes.
pub const VERSION: usize = MIGRATIONS.len();

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database has schema version {found}, newer than this interlockd understands \
         ({VERSION}); it was written by a newer release: run that release (or newer), or \
         restore a backup taken before the upgrade"
    )]
    Newer { found: usize },
    #[error("migrating the schema from version {from} failed: {source}")]
    Migration {
        from: usize,
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The schema version of an open database.
pub fn version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Applies the migrations `conn` has not seen, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let found = version(conn)?;
    if found > VERSION {
        return Err(SchemaError::Newer { found });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found) {
        let apply = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()
        };
        apply(conn).map_err(|source| SchemaError::Migration { from: i, source })?;
    }
    Ok(())
}
