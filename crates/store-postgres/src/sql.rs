//! Queries through each connection's statement cache: a statement is
//! parsed and planned once per connection, then each use is a single round
//! trip (tokio-postgres otherwise prepares an unnamed statement, an extra
//! round trip, on every call with SQL text).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub type PgResult<T> = Result<T, tokio_postgres::Error>;
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub async fn execute<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> PgResult<u64> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, params).await
}

pub async fn query<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> PgResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, params).await
}

pub async fn query_one<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> PgResult<Row> {
    let st = c.prepare_cached(sql).await?;
    c.query_one(&st, params).await
}

pub async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> PgResult<Option<Row>> {
    let st = c.prepare_cached(sql).await?;
    c.query_opt(&st, params).await
}
