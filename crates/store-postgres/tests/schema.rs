//! Schema versions on PostgreSQL: replicas starting together migrate once,
//! under the lock, and a database from a newer release is refused with
//! nothing written to it.
use interlock_store_postgres::testing::TestDb;
use interlock_store_postgres::{PgOptions, PgStore, schema};

async fn sql(url: &str, q: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(conn);
    let rows = client.query(q, &[]).await.expect(q);
    drop(client);
    let _ = driver.await;
    rows
}

fn options(url: &str) -> PgOptions {
    let mut o = PgOptions::new(url);
    o.pool_size = 2;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| tokio::spawn(PgStore::open(options(&db.url))))
        .collect();
    for o in opens {
        o.await.unwrap().expect("every replica opens");
    }
    let rows = sql(&db.url, "SELECT version FROM interlock_schema").await;
    assert_eq!(rows.len(), 1, "one version row");
    assert_eq!(rows[0].get::<_, i32>(0), schema::VERSION);
}

#[tokio::test]
async fn a_database_from_a_newer_release_is_refused_untouched() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    drop(PgStore::open(options(&db.url)).await.expect("opens"));
    let newer = schema::VERSION + 5;
    sql(
        &db.url,
        &format!("UPDATE interlock_schema SET version = {newer}"),
    )
    .await;
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'";
    let before: i64 = sql(&db.url, tables).await[0].get(0);
    let e = match PgStore::open(options(&db.url)).await {
        Ok(_) => panic!("a newer database opened"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&format!("schema version {newer}"))
            && e.contains(&format!("({})", schema::VERSION)),
        "{e}"
    );
    let after: i64 = sql(&db.url, tables).await[0].get(0);
    assert_eq!(before, after, "no table created");
    let v: i32 = sql(&db.url, "SELECT version FROM interlock_schema").await[0].get(0);
    assert_eq!(v, newer, "the version is left as found");
}
