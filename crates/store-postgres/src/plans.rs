//! Plans of the statements every workflow runs, and the rule that keeps
//! them cheap.
//!
//! Statements go through each connection's statement cache, and after five
//! runs PostgreSQL may switch a cached statement to a *generic* plan: one
//! chosen without the parameters' values. For a lookup by primary key
//! with one more indexed column in the condition (`id = $1 AND owner =
//! $2`), the generic plan may pick the other column's index: the lease
//! check then walked every workflow its replica owns, and Exec's
//! compare-and-set every workflow in the same status, on each call. Cost
//! linear in the running (or waiting) workflows, per write.
//!
//! The rule: in a statement that finds a row by its key, every other
//! column of the condition is compared with `IS NOT DISTINCT FROM`, which
//! no index serves, so the key is the only way in whatever the plan. (The
//! parameters are never NULL there, so it means `=`.) The tests below hold
//! each such statement to it: its generic plan reaches the table by its
//! primary key only, on a fresh database and on one whose statistics make
//! the other index look selective.

#[cfg(test)]
mod tests {
    use crate::testing::TestDb;
    use crate::{PgOptions, PgStore};
    use serde_json::Value;

    /// The indexes and sequential scans the generic plan of `sql` uses on
    /// `table`.
    async fn access_paths(c: &tokio_postgres::Client, sql: &str, table: &str) -> Vec<String> {
        c.batch_execute("DEALLOCATE ALL; SET plan_cache_mode = force_generic_plan")
            .await
            .unwrap();
        c.batch_execute(&format!("PREPARE p AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let n: i64 = c
            .query_one(
                "SELECT cardinality(parameter_types)::bigint FROM pg_prepared_statements WHERE name = 'p'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let nulls = vec!["NULL"; n as usize].join(", ");
        // As text: the simple protocol returns every value so.
        let plan = c
            .simple_query(&format!("EXPLAIN (FORMAT JSON) EXECUTE p({nulls})"))
            .await
            .unwrap()
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(String::from),
                _ => None,
            })
            .expect("a plan");
        let mut out = Vec::new();
        collect(&serde_json::from_str(&plan).unwrap(), table, &mut out);
        out
    }

    fn collect(v: &Value, table: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if m.get("Relation Name").and_then(Value::as_str) == Some(table) {
                    match (m.get("Node Type"), m.get("Index Name")) {
                        (_, Some(Value::String(i))) => out.push(i.clone()),
                        (Some(Value::String(t)), None) if t.contains("Seq Scan") => {
                            out.push("seq scan".into())
                        }
                        _ => {}
                    }
                }
                m.values().for_each(|v| collect(v, table, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect(v, table, out)),
            _ => {}
        }
    }

    /// Each statement, the table it finds rows of by key, and that key.
    fn statements() -> Vec<(&'static str, String, &'static str, &'static str)> {
        vec![
            (
                "lease check",
                crate::ops::CHECK_LEASE.into(),
                "workflows",
                "workflows_pkey",
            ),
            (
                "lease release",
                crate::ops::RELEASE.into(),
                "workflows",
                "workflows_pkey",
            ),
            (
                "Exec's compare-and-set",
                crate::ops::TAKE_OVER.into(),
                "workflows",
                "workflows_pkey",
            ),
            (
                "fenced workflow update",
                crate::ops::UPDATE_WORKFLOW.into(),
                "workflows",
                "workflows_pkey",
            ),
            (
                "a dead owner's running workflows",
                crate::ops::RUNNING_OF.into(),
                "workflows",
                "workflows_running_owner",
            ),
            (
                "running workflows without an owner",
                crate::ops::RUNNING_UNOWNED.into(),
                "workflows",
                "workflows_running_owner",
            ),
            (
                "owners of running workflows",
                crate::ops::GONE_OWNERS.into(),
                "workflows",
                "workflows_running_owner",
            ),
            (
                "pending requests",
                crate::read::REQUESTS_FOR.into(),
                "workflows",
                "workflows_pkey",
            ),
            (
                "task claim renewal",
                crate::board::renew_sql(),
                "board",
                "board_pkey",
            ),
        ]
    }

    /// `seq_ok`: on tables without statistics a sequential scan is a fair
    /// plan (an `ANALYZE` later makes the cached plans be made again).
    async fn check_all(c: &tokio_postgres::Client, when: &str, seq_ok: bool) {
        let mut wrong = Vec::new();
        for (what, sql, table, key) in statements() {
            let paths = access_paths(c, &sql, table).await;
            let fine = |p: &String| p == key || (seq_ok && p == "seq scan");
            if paths.is_empty() || !paths.iter().all(fine) {
                wrong.push(format!("{what}: {paths:?} (want only {key})"));
            }
        }
        assert!(wrong.is_empty(), "{when}:\n{}", wrong.join("\n"));
    }

    #[tokio::test]
    async fn hot_statements_find_their_row_by_key_whatever_the_plan() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let mut o = PgOptions::new(&db.url);
        o.pool_size = 2;
        drop(PgStore::open(o).await.expect("opens"));
        let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        check_all(&c, "a fresh database", true).await;
        // Statistics that make the other indexes look selective: many
        // workflows, spread over many owners and statuses; many tasks over
        // many claimers.
        c.batch_execute(
            "INSERT INTO workflows (id, name, request, status, created, owner)
               SELECT 'w' || i, 'n', '{}', i % 7, i, 'o' || (i % 5000)
               FROM generate_series(1, 20000) i;
             INSERT INTO board (workflow_id, block_idx, job_idx, attempt, job_type, spec,
                                owner_epoch, posted_at, claimed_by)
               SELECT 'w' || i, 0, 0, 1, 't', '{}', 1, i, 'r' || (i % 5000)
               FROM generate_series(1, 20000) i;
             ANALYZE workflows; ANALYZE board;",
        )
        .await
        .unwrap();
        check_all(&c, "a database with statistics", false).await;
        drop(c);
        let _ = driver.await;
    }
}
