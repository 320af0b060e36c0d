//! Throwaway databases for tests: each test creates its own database on
//! the server `INTERLOCK_TEST_DATABASE_URL` points at (default: the local
//! PostgreSQL as user postgres), and drops it when done, so tests run in
//! parallel without seeing each other.
//!
//! Where no server answers, [`TestDb::create`] returns `None` after one
//! clear line, so such tests skip — except under `CI=true`, where a
//! missing database is a failure.

use std::time::Duration;

/// The variable naming the server tests create databases on.
pub const URL_VAR: &str = "INTERLOCK_TEST_DATABASE_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test; dropped (forcibly) with it.
pub struct TestDb {
    /// URL of the new database.
    pub url: String,
    admin: String,
    name: String,
}

fn admin_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..path_start])
}

impl TestDb {
    /// Creates a fresh database, or says why it cannot (see module docs).
    pub async fn create() -> Option<Self> {
        let admin = admin_url();
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&admin, tokio_postgres::NoTls),
        )
        .await;
        let (client, conn) = match connected {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Self::missing(&admin, &e.to_string()),
            Err(_) => return Self::missing(&admin, "no answer within 5 s"),
        };
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let name = format!(
            "interlock_t_{}",
            uuid::Uuid::now_v7().simple().to_string().to_lowercase()
        );
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name} on {admin}: {e}"));
        drop(client);
        driver.abort();
        Some(Self {
            url: with_database(&admin, &name),
            admin,
            name,
        })
    }

    fn missing(url: &str, why: &str) -> Option<Self> {
        let msg = format!(
            "PostgreSQL is not reachable at {} ({why}); set {URL_VAR} to a server tests may \
             create databases on",
            crate::redact(url)
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg} (CI=true: PostgreSQL tests must run)"
        );
        println!("skipping: {msg}");
        None
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    let driver = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                    driver.abort();
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/postgres", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(
            super::with_database("postgres://u@h/postgres?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h", "t1"),
            "postgres://u@h/t1"
        );
    }
}
