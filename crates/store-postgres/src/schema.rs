//! The schema, as numbered migrations, taken by one replica at a time.
//!
//! `interlock_schema.version` holds the number of migrations applied.
//! Migrating runs in one transaction under a transaction-level advisory
//! lock: replicas starting together wait for the first to finish, then
//! find nothing to do. A database written by a newer release is refused
//! before anything is written to it.

use tokio_postgres::Client;

/// Every migration, oldest first. Never edit one once released.
const MIGRATIONS: &[&str] = &[
    // 1: everything the contract needs. Times are microseconds since the
    // Unix epoch; lease times come from the database's clock.
    "CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        request TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        had_errors BOOLEAN NOT NULL DEFAULT false,
        es_stopped BOOLEAN NOT NULL DEFAULT false,
        created BIGINT NOT NULL,
        started BIGINT,
        ended BIGINT,
        policy_version TEXT NOT NULL DEFAULT '',
        submitted_by TEXT NOT NULL DEFAULT '',
        executed_by TEXT NOT NULL DEFAULT '',
        owner TEXT,
        epoch BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX workflows_created ON workflows (created, id);
    CREATE INDEX workflows_status_created ON workflows (status, created, id);
    CREATE INDEX workflows_name_created ON workflows (name, created, id);
    CREATE INDEX workflows_owner ON workflows (owner) WHERE owner IS NOT NULL;
    CREATE TABLE blocks (
        workflow_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        status INTEGER NOT NULL,
        has_error BOOLEAN NOT NULL,
        failures INTEGER NOT NULL,
        started BIGINT,
        ended BIGINT,
        PRIMARY KEY (workflow_id, idx)
    );
    CREATE TABLE jobs (
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        status INTEGER NOT NULL,
        error TEXT NOT NULL,
        outputs TEXT NOT NULL,
        started BIGINT,
        ended BIGINT,
        fatal BOOLEAN NOT NULL,
        attempts TEXT NOT NULL,
        checkpoint TEXT,
        PRIMARY KEY (workflow_id, block_idx, idx)
    );
    CREATE TABLE labels (
        workflow_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created BIGINT NOT NULL,
        PRIMARY KEY (key, value, created, workflow_id)
    );
    CREATE TABLE idempotency (
        request_id TEXT PRIMARY KEY,
        content_hash TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE INDEX idempotency_created ON idempotency (created);
    CREATE TABLE bucket_takes (
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        taken_at BIGINT NOT NULL,
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        job_idx INTEGER NOT NULL
    );
    CREATE INDEX bucket_takes_by_bucket ON bucket_takes (bucket, key, taken_at);
    CREATE INDEX bucket_takes_by_job ON bucket_takes (workflow_id, block_idx, job_idx);
    CREATE TABLE bucket_state (
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        tat BIGINT NOT NULL,
        per_token BIGINT NOT NULL,
        burst INTEGER NOT NULL,
        PRIMARY KEY (bucket, key)
    );
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        identity TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        request_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        peer TEXT NOT NULL
    );
    CREATE INDEX audit_target ON audit (target, id);
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        pid BIGINT NOT NULL,
        host TEXT NOT NULL,
        addr TEXT NOT NULL,
        version TEXT NOT NULL,
        started BIGINT NOT NULL,
        heartbeat BIGINT NOT NULL,
        expires BIGINT NOT NULL
    );
    CREATE TABLE requests (
        id BIGSERIAL PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX requests_by_workflow ON requests (workflow_id);
    CREATE TABLE shared_stops (
        name TEXT PRIMARY KEY,
        stop BOOLEAN NOT NULL,
        reason TEXT NOT NULL,
        set_by TEXT NOT NULL,
        at BIGINT NOT NULL
    );",
    // 2: drain beside stop. Both columns become the mode's code (0 go,
    // 1 stop, 2 drain), so existing rows keep their meaning. Changing the
    // type rewrites the tables once, under the migration lock.
    "ALTER TABLE workflows ALTER COLUMN es_stopped DROP DEFAULT;
    ALTER TABLE workflows ALTER COLUMN es_stopped TYPE SMALLINT
        USING (CASE WHEN es_stopped THEN 1 ELSE 0 END);
    ALTER TABLE workflows ALTER COLUMN es_stopped SET DEFAULT 0;
    ALTER TABLE shared_stops ALTER COLUMN stop TYPE SMALLINT
        USING (CASE WHEN stop THEN 1 ELSE 0 END);",
    // 3: concurrency limits' slots (granted or waiting), one row per job
    // and limit; see interlock_store::slots.
    "CREATE TABLE limit_slots (
        limit_name TEXT NOT NULL,
        part TEXT NOT NULL,
        holder TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        job_idx INTEGER NOT NULL,
        granted BOOLEAN NOT NULL,
        since BIGINT NOT NULL,
        seen BIGINT NOT NULL,
        position BIGINT NOT NULL,
        held BIGINT NOT NULL,
        max BIGINT NOT NULL,
        PRIMARY KEY (limit_name, part, workflow_id, block_idx, job_idx)
    );
    CREATE INDEX limit_slots_by_workflow ON limit_slots (workflow_id, block_idx, job_idx);",
    // 4: approvers' decisions (the two-person rule), one per identity.
    "CREATE TABLE approvals (
        workflow_id TEXT NOT NULL,
        identity TEXT NOT NULL,
        roles TEXT NOT NULL,
        approve BOOLEAN NOT NULL,
        comment TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (workflow_id, identity)
    );",
    // 5: webhook notifications waiting for delivery.
    "CREATE TABLE notices (
        id BIGSERIAL PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        hook TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_at BIGINT NOT NULL,
        created BIGINT NOT NULL,
        last_error TEXT NOT NULL
    );
    CREATE INDEX notices_due ON notices (next_at, id);",
    // 6: retention: finished workflows by end time, labels by workflow, and
    // a tombstone per pruned id.
    "CREATE INDEX workflows_ended ON workflows (ended) WHERE ended IS NOT NULL;
    CREATE INDEX labels_by_workflow ON labels (workflow_id);
    CREATE TABLE pruned (
        id TEXT PRIMARY KEY,
        ended BIGINT NOT NULL,
        pruned_at BIGINT NOT NULL,
        kept_days INTEGER NOT NULL
    );
    CREATE INDEX pruned_ended ON pruned (ended);",
    // 7: workflow templates. A revision row is never updated or deleted;
    // `templates` holds each name's newest revision number (the row puts
    // of one name lock, so revisions are consecutive) and whether it is
    // disabled.
    "CREATE TABLE templates (
        name TEXT PRIMARY KEY,
        latest INTEGER NOT NULL,
        disabled_by TEXT,
        disabled_reason TEXT,
        disabled_at BIGINT
    );
    CREATE TABLE template_revisions (
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        body TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (name, revision)
    );",
    // 8: schedules. `next_fire` is compared-and-set to claim a fire (one
    // replica wins); `firing_*` mark a claimed fire until its outcome is
    // recorded.
    "CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        workflow TEXT NOT NULL,
        paused BOOLEAN NOT NULL DEFAULT false,
        next_fire BIGINT,
        firing_due BIGINT,
        firing_by TEXT NOT NULL DEFAULT '',
        firing_key BIGINT,
        last_due BIGINT,
        last_outcome TEXT NOT NULL DEFAULT '',
        last_workflow TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );",
    // 9: the inventory, when it lives in the store. One meta row holds the
    // version every change bumps (replicas poll it).
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
        version BIGINT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );",
    // 10: job log lines. `seq` orders a workflow's lines as they were
    // written (one writer per workflow: its lease holder); `n` numbers an
    // attempt's lines, so trimming an attempt to its newest is one range
    // delete.
    "CREATE TABLE job_logs (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        job_idx INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        n BIGINT NOT NULL,
        at BIGINT NOT NULL,
        stream TEXT NOT NULL,
        line TEXT NOT NULL
    );
    CREATE INDEX job_logs_workflow ON job_logs (workflow_id, seq);
    CREATE INDEX job_logs_attempt ON job_logs (workflow_id, block_idx, job_idx, attempt, n);",
    // 11: the task board: remote job attempts posted by a workflow's owner
    // and claimed by the replica a worker of their type is connected to.
    "CREATE TABLE board (
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        job_idx INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        job_type TEXT NOT NULL,
        spec TEXT NOT NULL,
        owner_epoch BIGINT NOT NULL,
        posted_at BIGINT NOT NULL,
        claimed_by TEXT,
        claim BIGINT NOT NULL DEFAULT 0,
        claim_expires BIGINT NOT NULL DEFAULT 0,
        lease TEXT,
        checkpoint TEXT,
        result TEXT,
        lost TEXT,
        cancel TEXT,
        PRIMARY KEY (workflow_id, block_idx, job_idx)
    );
    CREATE INDEX board_open ON board (job_type, posted_at) WHERE claimed_by IS NULL;
    CREATE INDEX board_claimed_by ON board (claimed_by) WHERE claimed_by IS NOT NULL;
    CREATE INDEX board_lease ON board (lease) WHERE lease IS NOT NULL;",
    // 12: running workflows by owner, oldest first, for the orphan claim
    // (see `ops::claim_orphans`). Partial: a workflow is in it only while
    // it runs (2 is `Status::Running`).
    "CREATE INDEX workflows_running_owner ON workflows (owner, created) WHERE status = 2;",
];

/// The schema version this build writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// An arbitrary key for the migration lock ("ILCK" "MIGR").
const LOCK_KEY: i64 = 0x494c_434b_4d49_4752;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database has schema version {found}, newer than this interlockd understands \
         ({VERSION}); it was written by a newer release: run that release (or newer), or \
         restore a backup taken before the upgrade"
    )]
    Newer { found: i32 },
    #[error("migrating the schema: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Brings the schema up to date, one replica at a time.
pub async fn migrate(c: &mut Client) -> Result<(), SchemaError> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS interlock_schema (version INTEGER NOT NULL)")
        .await?;
    let found: i32 = match tx
        .query_opt("SELECT version FROM interlock_schema", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO interlock_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    if found > VERSION {
        return Err(SchemaError::Newer { found });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "UPDATE interlock_schema SET version = $1",
            &[&(i as i32 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
